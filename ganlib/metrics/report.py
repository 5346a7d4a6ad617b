"""Evaluation results as data: metrics.json and evaluation.json, table rows (for a Prefect table artifact), text.

The evaluate stage writes two files side by side in base.paths.evaluate:

    metrics.json     numbers only: the scores, their noise band, sample counts, checkpoint kimg, resolution,
                     seed; a score that was not computed is absent, never a string or null. A DVC out: what
                     DVC shows as metrics is scores/ beside it, the same numbers a file per metric (dvc_scores.py).
    evaluation.json  provenance: which dataset (md5, sha256), extractor (and its description), device and
                     batch size, whether the reference statistics came from the cache, notes, and why a
                     score asked for is unavailable. A DVC out, not a metric.

Readers take the two together (evaluation_record, read_evaluation): one mapping
with the keys metrics.json held before it was split, so a metrics.json of an
older revision, strings and all, reads the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from ganlib.formatting import fid_noise_band_text, fid_noise_description, plus_minus, significant
from ganlib.io.provenance import short_md5
from ganlib.metrics.errors import EvaluationError

METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "evaluation.json"
# The evaluate stage's other outputs and their formats, named here so that readers (commit-version, the CLI,
# the gallery) need not import the modules that compute them (torch-fidelity, torchvision: seconds a process).
MEMORISATION_FILE = "memorisation.json"
MEMORISATION_FORMAT = "scenegan-memorisation/1"
TRUNCATION_FILE = "truncation.json"
TRUNCATION_FORMAT = "scenegan-truncation/1"
_number = partial(significant, digits=6, scientific_from=1e5)   # the tables' precision: 218.812, 0.0123457
FID_UNCERTAINTY_KEYS = (
    "fid_noise_low", "fid_noise_high", "fid_noise_bias", "fid_noise_resamples", "fid_noise_n", "fid_infinity",
    "fid_infinity_unavailable_reason",
)
# Keys left out of metrics.json when not computed (files from before them lack them too; from_json reads None).
PRDC_KEYS = ("density", "coverage", "prdc_k")
MEMORISATION_KEYS = ("memorisation", "memorisation_pixels", "memorisation_baseline", "memorisation_n")
# metrics.json written before the band was named for what it is (sampling noise, not a confidence
# interval) used these keys; readers map them (scenegan compare reads old revisions' files).
LEGACY_FID_NOISE_KEYS = {
    "fid_ci_low": "fid_noise_low",
    "fid_ci_high": "fid_noise_high",
    "fid_bootstrap_bias": "fid_noise_bias",
    "fid_bootstrap_resamples": "fid_noise_resamples",
    "fid_bootstrap_n": "fid_noise_n",
}
# EvaluationReport fields that go to evaluation.json, not metrics.json: text, flags, and batch_size (a number,
# but a setting that does not change the scores; a metric column for it would only add width).
PROVENANCE_FIELDS = (
    "extractor", "extractor_description", "data_md5", "dataset_sha256", "device", "batch_size",
    "reference_stats_cached", "notes", "is_unavailable_reason", "fd_dinov2_unavailable_reason",
    "fid_infinity_unavailable_reason",
    "classes", "sample_labelling", "sample_class_counts", "per_class_how", "per_class_reasons",
    "per_class_unavailable_reason",
)
# A class-conditional generator's keys (ganlib/metrics/per_class.py): absent for an unconditional one, whose
# files stay exactly as they were. per_class (metrics.json) maps each class to its numbers; the rest is provenance.
CLASS_KEYS = ("classes", "sample_labelling", "sample_class_counts", "per_class", "per_class_how", "per_class_reasons",
              "per_class_unavailable_reason")
# The per-class table's FID heading (the band as in the overall FID row).
CLASS_FID_HEADING = "FID [sampling noise, 95%]"


@dataclass(frozen=True)
class EvaluationReport:
    """One generator scored against one dataset. Scores not computed are None."""

    fid: float | None
    kid_mean: float | None
    kid_std: float | None
    kid_subset_size: int | None
    is_mean: float | None
    is_std: float | None
    is_unavailable_reason: str | None
    precision: float | None
    recall: float | None
    n_samples: int
    n_reference: int
    batch_size: int
    seed: int
    extractor: str
    extractor_description: str
    data_md5: str | None
    dataset_sha256: str
    checkpoint_kimg: float | None
    resolution: int
    reference_stats_cached: bool | None  # None: not known (read back from files written before evaluation.json)
    device: str
    notes: tuple[str, ...]
    # Fréchet distance on DINOv2 ViT-B/14 features; both None when evaluate.metrics lacks fd_dinov2.
    fd_dinov2: float | None = None
    fd_dinov2_unavailable_reason: str | None = None
    # FID's sampling-noise band (bootstrap over the generated samples, reference fixed) and FID-infinity
    # (ganlib/metrics/scores.py); None when not computed (and then left out of metrics.json; older files
    # lack them, or name the band fid_ci_*: see LEGACY_FID_NOISE_KEYS).
    fid_noise_low: float | None = None
    fid_noise_high: float | None = None
    fid_noise_bias: float | None = None        # taken out of the band; plain percentiles = band + bias
    fid_noise_resamples: int | None = None
    fid_noise_n: int | None = None
    fid_infinity: float | None = None
    # Asked for but not reported (too few samples per feature dimension): why, in evaluation.json;
    # metrics.json then has no fid_infinity (older files hold "fid_infinity": null beside the reason).
    fid_infinity_unavailable_reason: str | None = None
    # Precision and recall above, density and coverage here, all with k-NN balls of prdc_k (ganlib/metrics/prdc.py).
    # Files from before prdc (evaluate.metrics: prc) hold precision/recall with k = 3 and no prdc_k.
    density: float | None = None
    coverage: float | None = None
    prdc_k: int | None = None
    # The fraction of samples nearer a training image than all but memorisation_baseline of the training images
    # are to their nearest other one, in the extractor's features and in 32x32 pixels; about memorisation_baseline
    # for fresh images, 1 for copies (ganlib/metrics/memorisation.py; details in memorisation.json).
    memorisation: float | None = None
    memorisation_pixels: float | None = None
    memorisation_baseline: float | None = None
    memorisation_n: int | None = None          # samples checked
    # A class-conditional generator (ganlib/metrics/per_class.py); all None for an unconditional one.
    classes: tuple[str, ...] | None = None     # the data's classes, in label order: per_class's keys
    sample_labelling: str | None = None        # how the overall scores' samples were labelled, in words
    sample_class_counts: dict[str, int] | None = None   # of the n_samples, how many per class
    # class -> {fid, fid_low, fid_high, kid, kid_std, n_samples, n_real}, numbers only; a class without scores
    # has only n_real and n_samples 0, and its reason in per_class_reasons.
    per_class: dict[str, dict[str, float | int]] | None = None
    per_class_how: str | None = None                    # what each class's numbers compare, in words
    per_class_reasons: dict[str, str] | None = None
    per_class_unavailable_reason: str | None = None     # why no class has scores (data without labels, ...)

    def to_json(self) -> dict[str, Any]:
        """The whole report as one mapping: metrics.json and evaluation.json together (what readers get back).

        The keys are those metrics.json held before provenance moved beside it:
        FD_DINOv2 appears only when it was asked for, the FID band, PRDC and
        memorisation keys only when computed. Whether the reference statistics
        came from the cache says how the run went, not what it measured: only
        evaluation.json has it, so the gallery and the history read the same either way.
        """
        data = asdict(self)
        data.pop("reference_stats_cached")
        data["notes"] = list(self.notes)
        if not self._fd_dinov2_requested():
            data.pop("fd_dinov2")
            data.pop("fd_dinov2_unavailable_reason")
        for key in FID_UNCERTAINTY_KEYS:
            if data[key] is None and not (key == "fid_infinity" and self.fid_infinity_unavailable_reason):
                data.pop(key)
        for key in (*PRDC_KEYS, *MEMORISATION_KEYS, *CLASS_KEYS):
            if data[key] is None:
                data.pop(key)
        if self.classes is not None:
            data["classes"] = list(self.classes)
        return data

    def metrics_json(self) -> dict[str, int | float]:
        """What metrics.json holds: every score and count that has a value, numbers only (DVC metric columns).

        A score not computed (or unavailable) is left out; evaluation.json says why.
        Two identical evaluations write identical files, so `dvc metrics diff` shows only real changes.
        """
        return {key: value for key, value in self.to_json().items()
                if key not in PROVENANCE_FIELDS and value is not None}

    def provenance_json(self) -> dict[str, Any]:
        """What evaluation.json holds: what was measured with and on, how the run went, why a score is missing."""
        provenance = {key: value for key, value in self.to_json().items() if key in PROVENANCE_FIELDS}
        return {**provenance, "reference_stats_cached": self.reference_stats_cached}

    @property
    def _k_nn(self) -> str:
        return "k-NN" if self.prdc_k is None else f"{self.prdc_k}-NN"

    def _fd_dinov2_requested(self) -> bool:
        return self.fd_dinov2 is not None or self.fd_dinov2_unavailable_reason is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvaluationReport":
        """A report from to_json's mapping (evaluation_record of the two files, or an older metrics.json).

        A field the mapping lacks is None (a score not computed, a file from before the field); a key
        that is no field (a file from a later or earlier version of this code) is ignored.
        """
        data = with_current_metric_keys(data)
        values = {item.name: data.get(item.name) for item in fields(cls)}
        classes = None if values["classes"] is None else tuple(values["classes"])
        return cls(**{**values, "notes": tuple(data.get("notes") or ()), "classes": classes})

    def report_rows(self) -> list[dict[str, str]]:
        """Rows {metric, value, detail} for a printed table or a Prefect table artifact."""
        rows = [
            _fid_row(self),
            *([_row("FID-infinity", self.fid_infinity, "FID extrapolated to infinitely many samples (Chong & Forsyth 2020)",
                    missing=_unavailable(self.fid_infinity_unavailable_reason))]
              if self.fid_infinity is not None or self.fid_infinity_unavailable_reason else []),
            _row("KID", self.kid_mean, _spread_detail(self.kid_std, f"subset size {self.kid_subset_size}")),
            *self._labelling_rows(),
            _row("IS", self.is_mean, _spread_detail(self.is_std, "higher is better"),
                 missing=_unavailable(self.is_unavailable_reason)),
            *([_row("FD_DINOv2", self.fd_dinov2, "lower is better (DINOv2 ViT-B/14 features)",
                    missing=_unavailable(self.fd_dinov2_unavailable_reason))] if self._fd_dinov2_requested() else []),
            _row("precision", self.precision, f"share of samples inside a real image's {self._k_nn} ball: "
                 "realism, higher is better"),
            _row("recall", self.recall, f"share of real images inside a sample's {self._k_nn} ball: "
                 "diversity, higher is better"),
            _row("density", self.density, f"real {self._k_nn} balls holding a sample, per sample, over k: ~1 when "
                 "samples are distributed as the data, >1 crowded into typical images"),
            _row("coverage", self.coverage, f"share of real images with a sample inside their own {self._k_nn} "
                 "ball: higher is better"),
            *_memorisation_rows(self),
            {"metric": "samples", "value": str(self.n_samples), "detail": f"batch {self.batch_size}, seed {self.seed}"},
            {"metric": "reference", "value": str(self.n_reference), "detail": _reference_origin(self.reference_stats_cached)},
            {"metric": "extractor", "value": self.extractor, "detail": self.extractor_description},
            {"metric": "dataset", "value": short_md5(self.data_md5),
             "detail": f"images sha256 {(self.dataset_sha256 or 'unknown')[:12]}, {self.resolution}px"},
            {"metric": "checkpoint", "value": _number(self.checkpoint_kimg) + " kimg", "detail": f"device {self.device}"},
        ]
        rows += [{"metric": "note", "value": "", "detail": note} for note in self.notes]
        return rows

    def _labelling_rows(self) -> list[dict[str, str]]:
        """What a conditional generator's overall scores were measured on (no row for an unconditional one)."""
        if self.sample_labelling is None:
            return []
        count = len(self.sample_class_counts or {})
        return [{"metric": "classes", "value": f"{count} class{'es' if count != 1 else ''}",
                 "detail": f"the scores above are on {self.sample_labelling}"}]

    def per_class_rows(self) -> list[dict[str, str]]:
        """One row per class {class, real images, samples, FID [band], KID}; the reason where a class has no number.

        Empty for an unconditional generator; a single row saying why when no class could be scored.
        """
        return [row if reason is None else {**row, CLASS_FID_HEADING: f"n/a: {reason}"}
                for row, reason in self._per_class_entries()]

    def per_class_title(self) -> str:
        """The line above the per-class table: what each row measures."""
        how = self.per_class_how or f"samples generated as each class, seed {self.seed}, against that class's real images"
        return f"per class ({how}; the band is FID's sampling noise):"

    def per_class_section(self) -> list[str]:
        """The per-class title and table as printed lines, each reason for an n/a under the table (so the table
        stays as narrow as its numbers); none for an unconditional generator."""
        entries = self._per_class_entries()
        if not entries:
            return []
        rows = [row if reason is None else {**row, CLASS_FID_HEADING: "n/a (below)"} for row, reason in entries]
        reasons = [reason if reason.startswith(f"{row['class']}:") else f"{row['class']}: {reason}"
                   for row, reason in entries if reason is not None]
        return [self.per_class_title(), *render_table(rows).splitlines(), *(f"  n/a {reason}" for reason in reasons)]

    def _per_class_entries(self) -> list[tuple[dict[str, str], str | None]]:
        """Each class's row and why it has no number (None when it has one; its FID cell is then left empty)."""
        if self.per_class_unavailable_reason:
            return [({"class": "all", "real images": "", "samples": "", CLASS_FID_HEADING: "", "KID": ""},
                     self.per_class_unavailable_reason)]
        entries = []
        for name, scores in (self.per_class or {}).items():
            reason = (self.per_class_reasons or {}).get(name)
            fid, kid = scores.get("fid"), scores.get("kid")
            if reason or (fid is None and kid is None):
                reason, shown_fid, shown_kid = reason or "not computed", "", "n/a"
            else:
                shown_fid = "n/a" if fid is None else _number(fid)
                if fid is not None and scores.get("fid_low") is not None and scores.get("fid_high") is not None:
                    shown_fid += " " + fid_noise_band_text(scores["fid_low"], scores["fid_high"], _number)
                shown_kid = plus_minus(kid, scores.get("kid_std"), _number, missing="n/a")
            entries.append(({"class": name, "real images": str(scores.get("n_real", "")),
                             "samples": str(scores.get("n_samples", "")), CLASS_FID_HEADING: shown_fid, "KID": shown_kid},
                            reason))
        return entries


def with_current_metric_keys(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json as read, with the pre-rename fid_ci_* / fid_bootstrap_* keys under their current names.

    A key already present under its current name wins over its old name.
    """
    current = {LEGACY_FID_NOISE_KEYS.get(key, key): value for key, value in metrics.items()
               if key not in LEGACY_FID_NOISE_KEYS or LEGACY_FID_NOISE_KEYS[key] not in metrics}
    return current


def evaluation_record(
    metrics: Mapping[str, Any], provenance: Mapping[str, Any] | None
) -> dict[str, Any]:
    """metrics.json and evaluation.json as the one mapping EvaluationReport.to_json gives.

    Without an evaluation.json (written before the split, when metrics.json held the
    provenance itself) metrics.json is taken as it is, its old key names mapped.
    """
    if provenance is None:
        return with_current_metric_keys(metrics)
    return EvaluationReport.from_json({**provenance, **metrics}).to_json()


def read_evaluation(out_dir: Path) -> dict[str, Any] | None:
    """The evaluate stage's record in `out_dir` (base.paths.evaluate): evaluation_record of its two files.

    None when there is no metrics.json; evaluation.json may be absent (an evaluation from before it).
    """
    metrics = _read_json_object(Path(out_dir) / METRICS_FILE)
    if metrics is None:
        return None
    return evaluation_record(metrics, _read_json_object(Path(out_dir) / PROVENANCE_FILE))


def _read_json_object(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: not valid JSON ({exc}); re-run the evaluate stage (`dvc repro evaluate`)") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a JSON object; re-run the evaluate stage (`dvc repro evaluate`)")
    return data


@dataclass(frozen=True)
class DatasetComparison:
    """FID/KID between two prepared datasets (e.g. two dataset versions)."""

    fid: float
    kid_mean: float | None
    kid_std: float | None
    kid_subset_size: int | None
    n_a: int
    n_b: int
    seed: int
    extractor: str
    extractor_description: str
    data_md5_a: str | None
    data_md5_b: str | None
    dataset_sha256_a: str
    dataset_sha256_b: str
    resolution: int
    reference_stats_cached: tuple[bool, bool]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reference_stats_cached"] = list(self.reference_stats_cached)
        data["notes"] = list(self.notes)
        return data

    def report_rows(self) -> list[dict[str, str]]:
        rows = [
            _row("FID", self.fid, "0 = same feature distribution"),
            _row("KID", self.kid_mean, _spread_detail(self.kid_std, f"subset size {self.kid_subset_size}")),
            {"metric": "dataset A", "value": short_md5(self.data_md5_a), "detail": f"{self.n_a} images, sha256 {self.dataset_sha256_a[:12]}"},
            {"metric": "dataset B", "value": short_md5(self.data_md5_b), "detail": f"{self.n_b} images, sha256 {self.dataset_sha256_b[:12]}"},
            {"metric": "extractor", "value": self.extractor, "detail": self.extractor_description},
        ]
        rows += [{"metric": "note", "value": "", "detail": note} for note in self.notes]
        return rows


def _reference_origin(cached: bool | None) -> str:
    return {True: "statistics from the cache", False: "statistics computed now"}.get(cached, "")


def _unavailable(reason: str | None, width: int = 72) -> str:
    """The table cell for a score that could not be computed; the full reason stays in evaluation.json."""
    if not reason:
        return "not computed"
    text = f"unavailable: {reason}"
    return text if len(text) <= width else text[: width - 1].rstrip() + "… (see evaluation.json)"


def render_table(rows: list[dict[str, str]]) -> str:
    """Rows of equal keys as a plain-text table (what the CLI prints)."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns).rstrip()
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join([line, rule, *body])


def _fid_row(report: EvaluationReport) -> dict[str, str]:
    """FID, with its sampling-noise band when there is one: "218.8 [214.1, 223.9]", the detail saying what it is."""
    row = _row("FID", report.fid, "lower is better")
    if report.fid is None or report.fid_noise_low is None or report.fid_noise_high is None:
        return row
    return {
        "metric": "FID",
        "value": f"{_number(report.fid)} {fid_noise_band_text(report.fid_noise_low, report.fid_noise_high, _number)}",
        "detail": f"sampling noise: {fid_noise_description(report.fid_noise_resamples, report.fid_noise_n)} "
                  "(not an interval on the true FID); lower is better",
    }


def _memorisation_rows(report: EvaluationReport) -> list[dict[str, str]]:
    """The memorisation figures, each beside its baseline and what it means, in words."""
    if report.memorisation is None or report.memorisation_baseline is None:
        return [_row("memorisation", None, "")]
    baseline = _number(report.memorisation_baseline)
    meaning = (f"share of {report.memorisation_n} samples nearer one of {report.n_reference} training images than "
               f"{1 - report.memorisation_baseline:.0%} of those are to their nearest other one")
    rows = [{"metric": "memorisation", "value": f"{_number(report.memorisation)} (baseline {baseline})",
             "detail": f"{meaning} ({report.extractor} features); fresh images score ~{baseline}, copies 1; "
                       "closest pairs in memorisation.json"}]
    if report.memorisation_pixels is not None:
        rows.append({"metric": "memorisation (pixels)", "value": f"{_number(report.memorisation_pixels)} "
                     f"(baseline {baseline})", "detail": "the same on pixels downscaled to 32x32: a second opinion"})
    return rows


def _row(metric: str, value: float | None, detail: str, missing: str = "not computed") -> dict[str, str]:
    if value is None:
        return {"metric": metric, "value": "n/a", "detail": missing}
    return {"metric": metric, "value": _number(value), "detail": detail}


def _spread_detail(std: float | None, detail: str) -> str:
    """A table's detail cell led by the score's spread: "± 0.001, subset size 100"."""
    return detail if std is None else f"± {_number(std)}, {detail}"
