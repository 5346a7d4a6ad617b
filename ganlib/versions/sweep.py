"""Parameter sweeps: several parameter sets on the current dataset version, each its own DVC experiment.

    plan_sweep(params_file, overrides, grid, runs)  the parameter sets, every one validated -> SweepPlan
    SweepPlan.named_runs(data_md5, now)             one SweepRun per set: its experiment name, label, -S flags
    rank_runs(comparison, runs, failures)           the compare table ranked by FID, failed runs last
    sweep_markdown / write_sweep_report             reports/sweep-<time>.md and .csv

A sweep is a grid (the cartesian product of `--grid KEY=V1,V2` options) or a
list (`--run "KEY=V KEY=V"`, repeated) of settings, applied on top of the
sweep's own `--preset`/`--set`. Every set is validated like params.yaml
before anything runs, so a typo in the fourth run's key does not surface
after three trainings. A swept key must be one that the stages up to
evaluate read (else every run would be the same run), and no two sets may
give the same parameters.

Each set runs as `dvc exp run --temp -S ... evaluate` (ganlib.versions.retrain
runs it), named sweep-<data md5>-<UTC time>-<i>: valid for DVC and git, and
sorted by time in `dvc exp show`. Ranking uses FID's sampling-noise band the
way the publish gate does (ganlib.publish.gate.compare_fids): a run is worse
than the best only when the two bands do not overlap; otherwise the two
cannot be told apart at that sample count.
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from ganlib.config import (
    STAGE_PARAMS,
    Params,
    ParamsError,
    flatten_dotted,
    load_params,
    override_expression,
    select_params,
)
from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_text
from ganlib.io.provenance import short_md5
from ganlib.publish.gate import FidBand, compare_fids
from ganlib.versions.compare import (
    Comparison,
    VersionRow,
    added_param_keys,
    differing_param_keys,
    markdown_text,
)

# The stages `dvc exp run ... evaluate` runs: a swept key must be a parameter of one of them.
SWEPT_STAGES = ("preprocess", "train", "evaluate")
EXPERIMENT_PREFIX = "sweep"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"   # UTC, as retrain's experiment names
FAILED_KIND = "failed"           # VersionRow.kind of a run whose experiment failed: no metrics, a note saying why


class SweepError(UserFacingError):
    """A sweep's settings are not usable (bad --grid/--run, a run's params invalid), or every run failed."""


@dataclass(frozen=True)
class SweepRun:
    """One parameter set of a sweep, as the flow runs it."""

    index: int                                # 1-based, in the order of the plan
    name: str                                 # the DVC experiment's name
    settings: tuple[tuple[str, str], ...]     # (dotted key, value as typed) this run sets
    label: str                                # "lr_g=1e-4 r1_gamma=0.5": the Prefect task run's name
    set_params: tuple[str, ...]               # `dvc exp run -S` expressions: the sweep's --preset/--set, then these
    device: str                               # its base.device setting (the concurrency limit is per device)
    # The params its stages would record (params.json), dotted: a failed run's row shows them.
    recorded: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SweepPlan:
    """Validated parameter sets; named when the sweep starts (named_runs)."""

    overrides: tuple[str, ...]                          # the sweep's --preset and --set, applied to every run
    keys: tuple[str, ...]                               # the swept keys, in order of first appearance
    settings: tuple[tuple[tuple[str, str], ...], ...]   # per run: (key, value as typed)
    params: tuple[Params, ...] = field(repr=False)      # per run: validated, with the overrides and settings

    def named_runs(self, data_md5: str | None, now: datetime) -> list[SweepRun]:
        short = short_keys(self.keys)
        runs = []
        for index, (settings, params) in enumerate(zip(self.settings, self.params), start=1):
            label = " ".join(f"{short[key]}={value}" for key, value in settings)
            runs.append(SweepRun(index, experiment_name(data_md5, now, index), settings, label,
                                 set_params_flags(params, [*self.overrides], [key for key, _ in settings]),
                                 params.base.device, recorded_params(params)))
        return runs


def plan_sweep(params_file: str | Path, overrides: Sequence[str], grid: Sequence[str],
               runs: Sequence[str]) -> SweepPlan:
    """The sweep's parameter sets, each validated as params.yaml with the overrides and its settings.

    `grid`: `section.key=v1,v2` entries (their cartesian product); `runs`: `"section.key=v section.key=v"`
    strings (one set each). Exactly one of the two. Raises SweepError (or ParamsError) naming the
    option, the run and the key; nothing has run then.
    """
    base = load_params(params_file, overrides)   # the sweep's own --preset/--set: errors name --set
    if bool(grid) == bool(runs):
        raise SweepError("sweep: give either --grid SECTION.KEY=V1,V2 (repeatable: their product) or --run "
                         "'SECTION.KEY=V ...' (repeatable: one run each), " + ("not both" if grid else "and none given"))
    settings, given_as = _grid_settings(grid) if grid else _list_settings(runs)
    keys = tuple(given_as)
    dumped = base.model_dump(mode="json")
    for key in keys:
        _check_swept_key(dumped, key, given_as[key])
    params = []
    for index, run in enumerate(settings, start=1):
        expressions = [f"{key}={value}" for key, value in run]
        try:
            params.append(load_params(params_file, [*overrides, *expressions]))
        except ParamsError as exc:
            raise SweepError(f"sweep run {index} of {len(settings)} ({' '.join(expressions)}): {exc}") from None
    _refuse_duplicates(settings, params)
    return SweepPlan(tuple(overrides), keys, tuple(tuple(run) for run in settings), tuple(params))


def experiment_name(data_md5: str | None, now: datetime, index: int) -> str:
    """sweep-<data md5>-<UTC time>-<i>: a valid DVC experiment (git ref) name, unique per sweep and run."""
    return f"{EXPERIMENT_PREFIX}-{(data_md5 or 'untracked')[:8]}-{now:{TIME_FORMAT}}-{index}"


def report_stem(now: datetime) -> str:
    """sweep-<UTC time>: the report files' name, with the same time as the sweep's experiment names."""
    return f"{EXPERIMENT_PREFIX}-{now:{TIME_FORMAT}}"


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key by its last part (train.lr_g -> lr_g), or whole where two keys share that part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: part if last.count(part) == 1 else key for key, part in zip(keys, last)}


def set_params_flags(params: Params, overrides: Sequence[str], run_keys: Sequence[str]) -> tuple[str, ...]:
    """`section.key=value` for each key the sweep and the run set, the value as validated.

    Written back from the validated params rather than passed as typed: `dvc exp run -S` reads values
    with Hydra's grammar, which is not YAML's (`yes` is text there, a boolean here).
    """
    dumped = params.model_dump(mode="json")
    keys = dict.fromkeys([expression.partition("=")[0].strip() for expression in overrides] + list(run_keys))
    return tuple(override_expression(key, _dotted_value(dumped, key)) for key in keys)


def recorded_params(params: Params) -> dict[str, Any]:
    """The dotted params the stages up to evaluate record in their params.json (as compare reads them)."""
    recorded: dict[str, Any] = {}
    for stage in SWEPT_STAGES:
        recorded.update(flatten_dotted(select_params(params, STAGE_PARAMS[stage])))
    return recorded


# --------------------------------------------------------------------------- parsing


def split_values(text: str) -> list[str]:
    """`1e-4,2e-4` -> ["1e-4", "2e-4"]; commas inside [...], {...} or quotes belong to the value."""
    values, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def _grid_settings(grid: Sequence[str]) -> tuple[list[list[tuple[str, str]]], dict[str, str]]:
    """(the runs: each a list of (key, value)), {key: the option that gave it, for messages})."""
    axes: dict[str, list[str]] = {}
    given_as: dict[str, str] = {}
    for entry in grid:
        key, values = _key_and_text(entry, "--grid", "section.key=v1,v2")
        if key in axes:
            raise SweepError(f"--grid {entry!r}: {key} is already swept by another --grid; give all its values "
                             "in one, comma-separated")
        listed = split_values(values)
        if not all(listed):
            raise SweepError(f"--grid {entry!r}: an empty value; separate the values with single commas, "
                             "e.g. train.lr_g=1e-4,2e-4")
        if len(set(listed)) != len(listed):
            raise SweepError(f"--grid {entry!r}: a value is listed twice")
        axes[key] = listed
        given_as[key] = f"--grid {entry!r}"
    return [list(zip(axes, combination)) for combination in itertools.product(*axes.values())], given_as


def _list_settings(runs: Sequence[str]) -> tuple[list[list[tuple[str, str]]], dict[str, str]]:
    settings = [_run_settings(text) for text in runs]
    given_as: dict[str, str] = {}
    for text, run in zip(runs, settings):
        for key, _ in run:
            given_as.setdefault(key, f"--run {text!r}")
    return settings, given_as


def _run_settings(text: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SweepError(f"--run {text!r}: {exc}; quote each run as one argument: --run 'train.lr_g=1e-4 "
                         "train.r1_gamma=2'") from None
    if not words:
        raise SweepError("--run '': empty; give the run's settings, e.g. --run 'train.lr_g=1e-4 train.r1_gamma=2'")
    settings: dict[str, str] = {}
    for word in words:
        key, value = _key_and_text(word, f"--run {text!r}:", "section.key=value")
        if key in settings:
            raise SweepError(f"--run {text!r}: {key} is set twice")
        settings[key] = value
    return list(settings.items())


def _key_and_text(expression: str, option: str, shape: str) -> tuple[str, str]:
    key, equals, text = expression.partition("=")
    if not equals or not key.strip() or not text.strip():
        raise SweepError(f"{option} {expression!r}: expected {shape}, e.g. train.lr_g=1e-4")
    return key.strip(), text.strip()


def _check_swept_key(dumped: dict[str, Any], key: str, given_as: str) -> None:
    """An unknown key, or one no stage up to evaluate reads (all runs the same), is refused by name."""
    node: Any = dumped
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(node, dict):
            raise SweepError(f"{given_as}: unknown key {key!r}: {where} is a value, not a section")
        if part not in node:
            within = f"keys in {where!r}" if where else "sections"
            raise SweepError(f"{given_as}: unknown key {key!r}; {within} are: {', '.join(sorted(node))}")
        node = node[part]
    read = [name for stage in SWEPT_STAGES for name in STAGE_PARAMS[stage]]
    if not any(key == name or key.startswith(name + ".") or name.startswith(key + ".") for name in read):
        raise SweepError(f"{given_as}: {key} is not a parameter of the stages a sweep runs "
                         f"({', '.join(SWEPT_STAGES)}), so every run would be the same run; sweep a key "
                         "listed under their `params` in dvc.yaml")


def _refuse_duplicates(settings: Sequence[Sequence[tuple[str, str]]], params: Sequence[Params]) -> None:
    seen: dict[str, int] = {}
    for index, run in enumerate(params, start=1):
        canonical = repr(sorted(recorded_params(run).items()))
        if canonical in seen:
            first = seen[canonical]
            raise SweepError(f"sweep runs {first} ({_shown(settings[first - 1])}) and {index} "
                             f"({_shown(settings[index - 1])}) give the same parameters; drop one")
        seen[canonical] = index


def _shown(settings: Sequence[tuple[str, str]]) -> str:
    return " ".join(f"{key}={value}" for key, value in settings)


def _dotted_value(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class RankedSweep:
    """The sweep's table, best FID first, and what the noise bands say about the order."""

    comparison: Comparison
    best: str | None                    # the experiment with the lowest FID; None when no run has one
    within_noise: tuple[str, ...]       # runs whose FID band overlaps the best's: not told apart from it
    failed: Mapping[str, str]           # runs whose experiment failed -> why (one line)


def rank_runs(comparison: Comparison, runs: Sequence[SweepRun], failures: Mapping[str, str],
              data_md5: str | None) -> RankedSweep:
    """`comparison` (compare_versions over the finished runs' experiments) ranked by FID, failed runs last.

    Each row's note says where it stands against the best: its FID band overlaps the best's (the
    two cannot be told apart at this sample count) or lies wholly above it; the best's says so.
    """
    by_name = {run.name: run for run in runs}
    scored = sorted((row for row in comparison.rows if row.fid is not None), key=lambda row: row.fid)
    unscored = [row for row in comparison.rows if row.fid is None]
    best = scored[0] if scored else None
    within: list[str] = []
    ranked = []
    for row in scored:
        if row is best:
            verdict = "best FID"
        elif compare_fids(_band(best), _band(row)).replace:
            verdict = "worse than the best beyond the noise band"
        else:
            verdict = "within the best's noise band: not told apart from it"
            within.append(row.label)
        ranked.append(_noted(row, by_name, verdict))
    rows = ranked + [_noted(row, by_name, "no FID") for row in unscored]
    finished = next((row.params for row in rows if row.params is not None), None)
    rows += [failed_row(by_name[name], reason, data_md5, finished) for name, reason in failures.items()]
    ranked_comparison = replace(comparison, rows=tuple(rows), param_keys=differing_param_keys(rows),
                                added_param_keys=added_param_keys(rows))
    return RankedSweep(ranked_comparison, best.label if best else None, tuple(within), dict(failures))


def failed_row(run: SweepRun, reason: str, data_md5: str | None,
               finished: Mapping[str, Any] | None = None) -> VersionRow:
    """A row for a run without an experiment: its params and why it failed.

    Its params are a finished run's (`finished`, as its stages recorded them) with this run's own
    settings, so that only what the sweep changed differs: a stage records what it resolved as it ran
    (train.precision auto -> bf16), which a run that never ran cannot know. With no finished run,
    they are its params as the stages would record them before resolving anything.
    """
    params = dict(run.recorded)
    if finished is not None:
        own = [key for key in params if any(key == set_key or key.startswith(set_key + ".")
                                            for set_key in _set_keys(run))]
        params = {**finished, **{key: params[key] for key in own}}
    return VersionRow(
        label=run.name, kind=FAILED_KIND, commit=None, date=None, data_md5=data_md5, n_images=None,
        resolution=None, checkpoint_kimg=None, fid=None, kid_mean=None, kid_std=None, is_mean=None, is_std=None,
        n_samples=None, extractor=None, drift_fid_from_previous=None, drift_kid_from_previous=None,
        notes=(f"{run.label}: failed: {reason}",), params=params,
    )


def _set_keys(run: SweepRun) -> list[str]:
    return [expression.partition("=")[0] for expression in run.set_params]


MAX_REASON = 200  # characters of a failure's reason in the table; the run's Prefect log has all of it


def failure_reason(message: str) -> str:
    """A short line from a failed `dvc exp run`'s message: the stage's own error if it printed one.

    A stage's errors leave through flows/boundary.py as `scenegan STAGE: ...`; DVC's own last line
    ("failed to reproduce 'train'") only says which stage. A long one is cut after its first sentence.
    """
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    reason = lines[-1] if lines else "failed"
    for prefix in ("ERROR:", "scenegan "):   # the later wins: the stage's own words over DVC's
        reason = next((line for line in reversed(lines) if line.startswith(prefix)), reason)
    if len(reason) <= MAX_REASON:
        return reason
    sentence = reason.find(". ", 0, MAX_REASON)
    cut = reason[: sentence + 1] if sentence > 0 else reason[: MAX_REASON - 1] + "…"
    return f"{cut} (the rest in the run's log)"


def _band(row: VersionRow) -> FidBand:
    return FidBand(row.fid, row.fid_noise_low, row.fid_noise_high)


def _noted(row: VersionRow, runs: Mapping[str, SweepRun], verdict: str) -> VersionRow:
    run = runs.get(row.label)
    prefix = f"{run.label}: " if run else ""
    return replace(row, notes=(f"{prefix}{verdict}", *row.notes))


# --------------------------------------------------------------------------- report


MAX_COMMON_SHOWN = 6


def sweep_title(stem: str, count: int) -> str:
    return f"Sweep {stem}: {count} runs ranked by FID, best first"


def summary_lines(ranked: RankedSweep, runs: Sequence[SweepRun], overrides: Sequence[str],
                  data_md5: str | None) -> list[str]:
    """What the sweep ran and found, in sentences (the report's head, the CLI's closing lines)."""
    by_name = {run.name: run for run in runs}
    # A preset sets dozens of keys: the first few say which (`dvc exp show` has every param of each run).
    shown = " ".join(overrides[:MAX_COMMON_SHOWN])
    more = f" and {len(overrides) - MAX_COMMON_SHOWN} more" if len(overrides) > MAX_COMMON_SHOWN else ""
    common = f"{shown}{more}" if overrides else "none (params.yaml as it is)"
    lines = [f"{len(runs)} runs on dataset version {short_md5(data_md5)}; settings common to all: {common}."]
    if ranked.best is None:
        lines.append("No run has an FID.")
    else:
        lines.append(f"Best FID: {ranked.best} ({by_name[ranked.best].label})."
                     if ranked.best in by_name else f"Best FID: {ranked.best}.")
        if ranked.within_noise:
            lines.append(f"Not told apart from it (FID noise bands overlap): {', '.join(ranked.within_noise)}.")
    if ranked.failed:
        lines += [f"Failed: {name} ({by_name[name].label}): {reason}" for name, reason in ranked.failed.items()]
    return lines


def sweep_markdown(ranked: RankedSweep, title: str, summary: Sequence[str]) -> str:
    """The compare table (compare.md's format) under `title`, the summary between the title and the table."""
    table = ranked.comparison.to_markdown(title=markdown_text(title))
    head, _, rest = table.partition("\n\n")
    intro = [markdown_text(line) + "  " for line in summary]  # two spaces: a markdown line break
    promote = ("The runs are DVC experiments: `dvc exp show` lists them, `dvc exp apply NAME` brings one "
               "into the workspace.")
    return "\n".join([head, "", *intro, promote, "", rest])


def write_sweep_report(markdown: str, comparison: Comparison, reports: Path, stem: str) -> dict[str, Path]:
    """<reports>/<stem>.md and .csv, each written atomically."""
    return {
        "markdown": atomic_write_text(Path(reports) / f"{stem}.md", markdown),
        "csv": atomic_write_text(Path(reports) / f"{stem}.csv", comparison.to_csv()),
    }
