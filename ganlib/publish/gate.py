"""The publish gate: whether this run's generator replaces the published one, and the numbers behind it.

better_fid compares like with like. The published FID is taken as recorded
when it was measured under this run's FID settings (ganlib/publish/fid_settings.py);
otherwise the published generator is re-scored under this run's settings
(ganlib/publish/rescore.py) and that number is compared. A release that
stores no generator (published before releases kept one) cannot be
re-scored: the new release is published, as before, and the record says why.

The rule (`compare_fids`): the new model replaces the old only when its FID
is lower by more than the noise band. The noise band of an FID is the
evaluate stage's bootstrap band, [fid_noise_low, fid_noise_high]: how far
the FID of n_samples images moves when another n_samples of the same
generator are drawn (ganlib.metrics.scores.fid_noise_band). "Lower
by more than the noise band" means the two bands do not overlap, the new
one wholly below:

    replace  <=>  new fid_noise_high  <  previous fid_noise_low

When only the new FID has a band (the previous release recorded none and was
not re-scored), the previous FID counts as a band of width zero:
new fid_noise_high < previous FID. When the new FID has no band
(evaluate.fid_bootstrap: 0), the comparison is strict: new FID < previous FID.
The record names which of the three applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from ganlib.errors import UserFacingError
from ganlib.metrics.report import with_current_metric_keys
from ganlib.publish.fid_settings import fid_setting_differences, fid_settings, recorded_fid_settings, shown_setting
from ganlib.publish.targets import PublishedGallery

# The evaluate stage's metrics.json keys for FID's bootstrap sampling-noise band.
NOISE_LOW = "fid_noise_low"
NOISE_HIGH = "fid_noise_high"

Rule = Literal["noise_bands_apart", "band_below_previous_fid", "strict"]
PreviousBasis = Literal["recorded", "rescored", "not_comparable"]


class PublishError(UserFacingError, RuntimeError):
    """Publishing cannot proceed (missing metrics for the gate, mismatched inputs); nothing was changed."""


@dataclass(frozen=True)
class FidBand:
    """An FID and its sampling-noise band (low/high None: no band was computed)."""

    fid: float
    low: float | None = None
    high: float | None = None

    @property
    def has_band(self) -> bool:
        return self.low is not None and self.high is not None


def band_from_metrics(metrics: Mapping[str, Any] | None) -> FidBand | None:
    """The FID and band a metrics.json holds (older files' fid_ci_* names read too); None when it holds no FID."""
    if not metrics or not _is_number(metrics.get("fid")):
        return None
    metrics = with_current_metric_keys(metrics)
    low, high = metrics.get(NOISE_LOW), metrics.get(NOISE_HIGH)
    if not (_is_number(low) and _is_number(high)):
        low = high = None
    return FidBand(float(metrics["fid"]), low, high)


@dataclass(frozen=True)
class RescoredFid:
    """The published generator scored under this run's settings (ganlib/publish/rescore.py)."""

    band: FidBand
    settings: dict[str, Any]       # fid_settings of the re-scoring: must equal this run's
    generator_sha256: str


@dataclass(frozen=True)
class NotRescored:
    """Why the published generator could not be re-scored (the gate then publishes, as before)."""

    reason: str


@dataclass(frozen=True)
class RuleOutcome:
    replace: bool
    rule: Rule
    text: str  # the inequality with its numbers


def compare_fids(new: FidBand, previous: FidBand) -> RuleOutcome:
    """The gate's rule (see the module docstring): True when `new` is lower by more than the noise band."""
    if not new.has_band:
        return RuleOutcome(
            new.fid < previous.fid, "strict",
            f"no noise band for the new FID (evaluate.fid_bootstrap is 0): strict comparison, "
            f"new FID {_num(new.fid)} < previous FID {_num(previous.fid)}",
        )
    if not previous.has_band:
        return RuleOutcome(
            new.high < previous.fid, "band_below_previous_fid",
            f"the previous FID has no noise band: the new band's top {_num(new.high)} "
            f"must lie below the previous FID {_num(previous.fid)}",
        )
    return RuleOutcome(
        new.high < previous.low, "noise_bands_apart",
        f"the noise bands must not overlap: new {_band(new.low, new.high)} "
        f"wholly below previous {_band(previous.low, previous.high)}",
    )


@dataclass(frozen=True)
class FidComparison:
    """What the better_fid gate compared, for publish.json and the Prefect artifact."""

    previous_scored_as: PreviousBasis    # the previous FID compared: as recorded, re-scored, or not at all
    rule: Rule | None                    # None: not compared (not comparable and not re-scorable)
    rule_text: str
    fid: float
    fid_noise_low: float | None
    fid_noise_high: float | None
    previous_fid_recorded: float
    previous_fid_rescored: float | None
    previous_fid_compared: float | None
    previous_fid_noise_low: float | None
    previous_fid_noise_high: float | None
    settings: dict[str, Any]             # this run's FID settings
    previous_settings: dict[str, Any]    # what the published release recorded
    differences: list[str] = field(default_factory=list)
    previous_generator_sha256: str | None = None


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    reason: str
    previous_release: str | None
    previous_fid: float | None           # as the published release recorded it
    comparison: FidComparison | None = None


Rescore = Callable[[PublishedGallery], RescoredFid | NotRescored]


def decide_gate(
    gate: Literal["always", "better_fid"],
    metrics: dict[str, Any] | None,
    current: PublishedGallery | None,
    metrics_path: Path,
    rescore: Rescore,
) -> GateDecision:
    """Publish or not. better_fid: only an FID lower by more than the noise band replaces the published one.

    `rescore` is called only when the published FID was measured under other
    settings than this run's.
    """
    previous_release = current.release if current else None
    previous_fid = current.fid if current else None

    def decision(publish: bool, reason: str, comparison: FidComparison | None = None) -> GateDecision:
        return GateDecision(publish, reason, previous_release, previous_fid, comparison)

    if gate == "always":
        evaluated = "" if metrics is not None else f"; not evaluated ({metrics_path.name} absent)"
        return decision(True, f"publish.gate is always{evaluated}")
    new = _required_fid(metrics, metrics_path)
    if current is None:
        return decision(True, f"FID {new.fid:.3f}; no gallery was published at the target before")
    if previous_fid is None:
        return decision(True, f"FID {new.fid:.3f}; the published release {previous_release} has no FID")

    settings = fid_settings(metrics) or {}
    previous_settings = recorded_fid_settings(current.manifest)
    differences = fid_setting_differences(settings, previous_settings)
    numbers = dict(
        fid=new.fid, fid_noise_low=new.low, fid_noise_high=new.high, previous_fid_recorded=previous_fid,
        settings=settings, previous_settings=previous_settings, differences=differences,
    )

    def ruled(previous: FidBand, basis: PreviousBasis, generator_sha256: str | None = None) -> GateDecision:
        return decision(*_ruled(new, previous, basis, generator_sha256, numbers, previous_release))

    if not differences:
        recorded = band_from_metrics({**_mapping(current.manifest.get("metrics")), "fid": previous_fid})
        return ruled(recorded or FidBand(previous_fid), "recorded")

    rescored = rescore(current)
    if isinstance(rescored, NotRescored):
        comparison = FidComparison(
            previous_scored_as="not_comparable", rule=None, rule_text="not compared: " + rescored.reason,
            previous_fid_rescored=None, previous_fid_compared=None,
            previous_fid_noise_low=None, previous_fid_noise_high=None, **numbers,
        )
        return decision(
            True,
            f"FID {new.fid:.3f}; previous FID {previous_fid:.3f} (release {previous_release}) not comparable: "
            + "; ".join(differences) + f"; and not re-scored: {rescored.reason}",
            comparison,
        )
    if rescored.settings != settings:
        # The re-scoring used the current params; a metrics.json from other params would make the
        # two FIDs unlike again, which is what the re-scoring is there to prevent.
        raise PublishError(
            f"{metrics_path} was not measured under the current evaluate settings "
            f"({'; '.join(fid_setting_differences(settings, rescored.settings))}: metrics.json vs the current params): "
            "re-run the evaluate stage (`dvc repro evaluate`) so that both generators are scored alike"
        )
    return ruled(rescored.band, "rescored", rescored.generator_sha256)


def _ruled(
    new: FidBand,
    previous: FidBand,
    basis: PreviousBasis,
    generator_sha256: str | None,
    numbers: dict[str, Any],
    previous_release: str | None,
) -> tuple[bool, str, FidComparison]:
    """Apply the rule to a comparable previous FID: (publish, reason, what was compared)."""
    outcome = compare_fids(new, previous)
    comparison = FidComparison(
        previous_scored_as=basis, rule=outcome.rule, rule_text=outcome.text,
        previous_fid_rescored=previous.fid if basis == "rescored" else None, previous_fid_compared=previous.fid,
        previous_fid_noise_low=previous.low, previous_fid_noise_high=previous.high,
        previous_generator_sha256=generator_sha256, **numbers,
    )
    how = "re-scored under this run's settings" if basis == "rescored" else "as recorded"
    if basis == "rescored":
        how += f" (recorded {numbers['previous_fid_recorded']:.3f}: {'; '.join(numbers['differences'])})"
    versus = f"the published {previous.fid:.3f} {how}, release {previous_release}"
    if outcome.replace:
        return True, f"FID {new.fid:.3f} beats {versus}; {outcome.text}", comparison
    return False, f"FID {new.fid:.3f} does not beat {versus}; {outcome.text}; the gallery is unchanged", comparison


def _required_fid(metrics: dict[str, Any] | None, metrics_path: Path) -> FidBand:
    if metrics is None:
        raise PublishError(
            f"publish.gate is better_fid but {metrics_path} does not exist: run the evaluate stage first "
            "(`dvc repro evaluate`), or set publish.gate: always"
        )
    band = band_from_metrics(metrics)
    if band is None:
        raise PublishError(
            f"publish.gate is better_fid but {metrics_path} has no fid: add fid to evaluate.metrics "
            "and re-run evaluate, or set publish.gate: always"
        )
    return band


def comparison_markdown(status: str, reason: str, comparison: FidComparison | None) -> str:
    """The gate's decision as Markdown (the publish task's Prefect artifact)."""
    lines = [f"**{'Published' if status == 'published' else 'Publish skipped'}**: {reason}", ""]
    if comparison is None:
        return "\n".join(lines)
    previous_band = _band(comparison.previous_fid_noise_low, comparison.previous_fid_noise_high)
    recorded_band = previous_band if comparison.previous_scored_as == "recorded" else ""
    lines += [
        f"Rule: {comparison.rule or 'not compared'}: {comparison.rule_text}",
        "",
        "| | FID | noise band |",
        "|---|---|---|",
        f"| this run | {_num(comparison.fid)} | {_band(comparison.fid_noise_low, comparison.fid_noise_high)} |",
        f"| published, as recorded | {_num(comparison.previous_fid_recorded)} | {recorded_band} |",
    ]
    if comparison.previous_scored_as == "rescored":
        lines.append(f"| published, re-scored | {_num(comparison.previous_fid_rescored)} | {previous_band} |")
    lines += ["", "| setting | this run | published |", "|---|---|---|"]
    lines += [
        f"| {key} | {_cell(comparison.settings.get(key))} | {_cell(comparison.previous_settings.get(key))} |"
        for key in comparison.settings
    ]
    if comparison.differences:
        lines += ["", "Differed: " + "; ".join(comparison.differences)]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    # Six significant digits: enough to tell apart the ends of a narrow band, whatever the FID's scale.
    return "—" if value is None else f"{value:.6g}"


def _band(low: float | None, high: float | None) -> str:
    return "none" if low is None or high is None else f"[{_num(low)}, {_num(high)}]"


def _cell(value: Any) -> str:
    return shown_setting(value).replace("|", "\\|")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
