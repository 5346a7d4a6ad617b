"""What each `scenegan` command's result says: a few lines for people, the full data for --json.

One function per command, from what the command got back (a summary
dataclass, a flow's return value) and the files its stage wrote, to a
CommandResult. Lists of files become counts with a few examples; the JSON
side keeps them whole.
"""

from __future__ import annotations

from collections import Counter

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from flows.output import CommandResult, byte_size, examples, plural, shown_path, to_jsonable
from ganlib.formatting import fid_noise_text, plus_minus, significant
from ganlib.io.provenance import short_md5
from ganlib.versions.commit import retrain_commit_message

if TYPE_CHECKING:
    from ganlib.config import Params
    from ganlib.data.importer import ImportSummary, ReplacedVersion
    from ganlib.data.raw_check import RawCheck
    from ganlib.data.raw_data import RawDataStatus
    from ganlib.data.scenes import DefaultDatasetSummary
    from ganlib.metrics.report import DatasetComparison
    from ganlib.stages.generate import GenerateOutcome
    from ganlib.versions.commit import VersionCommit

NEXT_STAGE = {"preprocess": "train", "train": "evaluate", "evaluate": "publish"}
MAX_TABLE_ROWS = 20
MAX_PRESET_SETTINGS = 6
_number = partial(significant, digits=4)   # a result line's precision: 218.8, 0.01235


# --------------------------------------------------------------------------- data


def data_default_result(summary: DefaultDatasetSummary, raw_dir: Path) -> CommandResult:
    out = summary.out_dir
    lines = [
        f"Wrote {plural(summary.n_images, 'scene')} of {summary.size}x{summary.size} px (seed {summary.seed}) "
        f"to {shown_path(out)} in {summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)."
    ]
    return CommandResult(lines, {"command": "data default", **to_jsonable(summary),
                                 "images_per_second": summary.images_per_second},
                         _record_raw_steps(out, raw_dir))


def data_import_result(summary: ImportSummary, raw_dir: Path, replaced: ReplacedVersion | None = None) -> CommandResult:
    dest, n_new, n_present = shown_path(summary.dest), len(summary.imported), len(summary.already_present)
    read = f"{byte_size(summary.total_bytes)} read"
    replacing = summary.existing == "replace" and summary.files_before > 0
    if replacing:
        lines = [f"Replaced the {plural(summary.files_before, 'file')} in {dest} with "
                 f"{plural(n_new, 'image file')} from {shown_path(summary.source)} ({read})."]
        lines += _replaced_lines(replaced)
    elif n_new:
        lines = [f"Imported {plural(n_new, 'new image file')} from {shown_path(summary.source)} into {dest} ({read})."]
        if n_present:
            lines.append(f"{plural(n_present, 'file')} already in {dest} with the same content: left as they were.")
    else:
        lines = [f"Nothing new: all {plural(n_present, 'image file')} from {shown_path(summary.source)} "
                 f"are already in {dest} ({read})."]
    if summary.existing == "add" and summary.files_before:
        lines.append(f"Added to what was there: {summary.files_before} before + {n_new} new = "
                     f"{plural(summary.files_after, 'file')} in {dest} now.")
    by_reason: dict[str, list[str]] = {}
    for item in summary.skipped:
        by_reason.setdefault(item.reason, []).append(item.name)
    if by_reason:
        lines.append(f"Skipped {plural(len(summary.skipped), 'file')}:")
        lines += [f"  {reason}: {len(names)} ({examples(names, len(names))})" for reason, names in sorted(by_reason.items())]
    if summary.hidden_skipped:
        lines.append(f"Skipped {plural(summary.hidden_skipped, 'hidden entry', 'hidden entries')} "
                     "(dot-files, dot-folders, __MACOSX).")
    data = {"command": "data import", **to_jsonable(summary),
            "skipped_by_reason": {reason: len(names) for reason, names in sorted(by_reason.items())},
            "replaced_version": to_jsonable(replaced) if replacing and replaced is not None else None}
    # Into the project's raw folder: record the version. Elsewhere: the user has their own plan for it.
    into_raw = Path(summary.dest).resolve() == Path(raw_dir).resolve()
    return CommandResult(lines, data, _record_raw_steps(summary.dest, raw_dir) if (n_new or replacing) and into_raw else [])


def _replaced_lines(replaced: ReplacedVersion | None) -> list[str]:
    """Which dataset version a --replace removed, and how to get it back (or that nothing can)."""
    if replaced is None or replaced.md5 is None:
        return ["Warning: the replaced files were not tracked by DVC (no .dvc file records them): "
                "they cannot be recovered."]
    lines = [f"Replaced dataset version {replaced.short} (md5 {replaced.md5}, {replaced.dvc_file})."]
    if replaced.restore:
        lines.append(f"To get it back: `{replaced.restore}`" + (f" ({replaced.restore_note})." if replaced.restore_note else ""))
    else:
        lines.append(f"Warning: version {replaced.short} is not in the local DVC cache: only a DVC remote that "
                     f"holds it can bring it back (`git checkout <commit> -- {replaced.dvc_file} && dvc pull`).")
    return lines


def data_check_result(check: RawCheck, raw_dir: Path) -> CommandResult:
    """`scenegan data check` that passed (a refusal is a RawDataCheckError listing the entries)."""
    lines = [f"{shown_path(check.directory)}: no symlinks or special files among "
             f"{plural(check.checked, 'entry', 'entries')}; safe to `dvc add`."]
    return CommandResult(lines, {"command": "data check", **to_jsonable(check)}, _record_raw_steps(check.directory, raw_dir))


def data_ensure_result(status: RawDataStatus) -> CommandResult:
    files = sum(1 for path in status.path.rglob("*") if path.is_file())
    what = {
        "present": "already present, left as it is",
        "pulled": "pulled from the DVC remote",
        "generated": "generated the embedded default dataset",
    }.get(status.origin, status.origin)
    lines = [f"{shown_path(status.path)}: {what} ({plural(files, 'file')}); "
             f"dataset version {short_md5(status.md5_after)} (data.dvc)."]
    if status.data_dvc_changed and status.md5_before:
        lines.append(f"data.dvc changed from {short_md5(status.md5_before)}: commit data.dvc to keep this dataset version.")
    data = {"command": "data ensure", **to_jsonable(status), "files": files, "data_dvc_changed": status.data_dvc_changed}
    return CommandResult(lines, data, ["`scenegan pipeline` (or `dvc repro`) to prepare, train, evaluate and publish"])


def _record_raw_steps(out: Path, raw_dir: Path) -> list[str]:
    """`dvc add` when the images went to the project's raw folder; otherwise how to get them there."""
    if Path(out).resolve() == Path(raw_dir).resolve():
        return [f"`dvc add {shown_path(out)}` to record this dataset version, then `dvc repro`"]
    return [f"`scenegan data import {shown_path(out)}` to copy them into {shown_path(raw_dir)}, the dataset the pipeline reads"]


# --------------------------------------------------------------------------- stages


def stage_result(stage: str, outcome: Mapping[str, Any], params: Params, root: Path, flags: str) -> CommandResult:
    """`scenegan run STAGE`: what the stage produced, and the next stage with the same options."""
    follow = NEXT_STAGE.get(stage)
    next_steps = [f"`scenegan run {follow}{flags}`" if follow else "`scenegan summary` for the gallery and the metrics"]
    return CommandResult(stage_lines(stage, outcome, params, root),
                         {"command": "run", "stage": stage, "result": to_jsonable(outcome)}, next_steps)


def pipeline_result(outcomes: Mapping[str, Mapping[str, Any]], params: Params, root: Path,
                    recorded_in_dvc: bool) -> CommandResult:
    lines = [line for stage, outcome in outcomes.items() for line in stage_lines(stage, outcome, params, root)]
    if outcomes:
        lines.append("Recorded the outputs in dvc.lock." if recorded_in_dvc
                     else "Not recorded in dvc.lock (run with overrides): `dvc repro` would redo these stages.")
    data = {"command": "pipeline", "stages": to_jsonable(outcomes), "recorded_in_dvc": recorded_in_dvc}
    return CommandResult(lines, data, ["`scenegan summary` for the gallery and the metrics"])


def stage_lines(stage: str, outcome: Mapping[str, Any], params: Params, root: Path) -> list[str]:
    """A few lines on what one stage produced, from its flow's return value and the files it wrote."""
    describe = {"preprocess": _preprocess_lines, "train": _train_lines,
                "evaluate": _evaluate_lines, "publish": _publish_lines}[stage]
    return describe(outcome, params, root)


def _preprocess_lines(outcome: Mapping[str, Any], params: Params, root: Path) -> list[str]:
    from ganlib.data.dataset import QA_REPORT_FILE

    out_dir = Path(outcome["out_dir"])
    lines = [
        f"preprocess: {plural(outcome['count'], 'image')} at {outcome['resolution']} px in {shown_path(out_dir)} "
        f"(scanned {outcome['scanned']}, rejected {outcome['rejected']}, {outcome['hidden_skipped']} hidden skipped) "
        f"in {outcome['seconds']:.1f} s."
    ]
    if outcome["rejected"]:
        report = out_dir / QA_REPORT_FILE
        rejects = json.loads(report.read_text())["rejects"] if report.is_file() else []
        for reason, count in sorted(outcome["rejects_by_reason"].items()):
            paths = [reject["path"] for reject in rejects if reject["reason"] == reason]
            lines.append(f"  rejected as {reason}: {count}" + (f" ({examples(paths, count)})" if paths else ""))
        lines.append(f"  every reject, with details: {shown_path(report)}")
    return lines


def _train_lines(outcome: Mapping[str, Any], params: Params, root: Path) -> list[str]:
    if "generator" not in outcome:  # torchrun: the ranks ran in child processes
        return [f"train: {outcome['nproc']} processes; outputs in {shown_path(outcome['out_dir'])}."]
    resumed = f", resumed from {shown_path(outcome['resumed_from'])}" if outcome.get("resumed_from") else ""
    return [f"train: {outcome['kimg']:g} kimg ({plural(outcome['steps'], 'step')}{resumed}); "
            f"EMA generator: {shown_path(outcome['generator'])}."]


def _evaluate_lines(outcome: Mapping[str, Any], params: Params, root: Path) -> list[str]:
    from ganlib.metrics.report import METRICS_FILE

    scores = [fid_noise_text(outcome.get("fid"), outcome.get("fid_noise_low"), outcome.get("fid_noise_high"),
                             outcome.get("fid_noise_resamples"), outcome.get("fid_noise_n"), _number)]
    if outcome.get("fid_infinity") is not None:
        scores.append(f"FID-infinity {_number(outcome['fid_infinity'])}")
    if outcome.get("kid_mean") is not None:
        scores.append(f"KID {plus_minus(outcome['kid_mean'], outcome.get('kid_std'), _number)}")
    if outcome.get("is_mean") is not None:
        scores.append(f"IS {_number(outcome['is_mean'])}")
    if outcome.get("precision") is not None:
        scores.append(f"precision {_number(outcome['precision'])}, recall {_number(outcome.get('recall'))}")
    kimg = outcome.get("checkpoint_kimg")
    at = f" at {kimg:g} kimg" if kimg is not None else ""
    lines = [
        f"evaluate: {', '.join(scores)}.",
        f"  generator{at}, {outcome['n_samples']} samples, extractor {outcome['extractor']}; "
        f"written to {shown_path(root / params.base.paths.evaluate / METRICS_FILE)}",
    ]
    if outcome.get("fid_infinity_unavailable_reason"):
        lines.append(f"  {outcome['fid_infinity_unavailable_reason']}")
    if outcome.get("per_class"):   # a class-conditional generator: the table with bands and reasons is in the summary
        reasons = outcome.get("per_class_reasons") or {}
        shown = [f"{name} {'n/a' if name in reasons or scores.get('fid') is None else _number(scores['fid'])}"
                 for name, scores in outcome["per_class"].items()]
        lines.append(f"  FID per class: {', '.join(shown)} (bands, KID and reasons: `scenegan summary`)")
    return lines


def _publish_lines(outcome: Mapping[str, Any], params: Params, root: Path) -> list[str]:
    index = outcome["index"]
    where = index if "://" in index else shown_path(Path(index).resolve())
    if outcome["status"] == "published":
        fid = f", FID {_number(outcome['fid'])}" if outcome.get("fid") is not None else ""
        return [f"publish: release {outcome['release']} ({plural(outcome['files'], 'file')}{fid}): {where}"]
    return [f"publish: skipped ({outcome['reason']}); the gallery at {where} is unchanged."]


# --------------------------------------------------------------------------- other commands


def summary_result(params: Params, root: Path) -> CommandResult:
    """`scenegan summary`: the text `make demo` ends with; for --json also the records it is made from."""
    from flows.summary import pipeline_summary
    from ganlib.metrics.report import METRICS_FILE, PROVENANCE_FILE, read_evaluation

    text = pipeline_summary(params, root)
    record_path = root / params.base.paths.publish_record
    evaluate_dir = root / params.base.paths.evaluate
    data = {
        "command": "summary",
        "publish_record": str(record_path),
        "gallery": json.loads(record_path.read_text()) if record_path.is_file() else None,
        "metrics_file": str(evaluate_dir / METRICS_FILE),
        "provenance_file": str(evaluate_dir / PROVENANCE_FILE),
        # Both files as one mapping: the scores with what they were measured on (dataset, extractor, device).
        "metrics": read_evaluation(evaluate_dir),
        # pipeline_summary ends with the Prefect UI line (a link to the latest run when a server is reachable).
        "prefect_ui": text.splitlines()[-1].removeprefix("Prefect UI: "),
        "text": text,
    }
    return CommandResult(text.splitlines(), data)


def retrain_result(outcome: Mapping[str, Any]) -> CommandResult:
    """`scenegan retrain`: published, kept (and why: the gate's numbers), or nothing to do."""
    kind = outcome.get("outcome") or _retrain_kind(outcome)
    data = {"command": "retrain", **to_jsonable(outcome), "outcome": kind}
    version = short_md5(outcome["data_md5"])
    if kind == "nothing to do":
        return CommandResult(
            [f"retrain: nothing to do; dataset version {version} was already retrained."],
            data, ["`scenegan retrain --force` to retrain anyway"],
        )
    previous = (f"previous version {short_md5(outcome['previous_md5'])}" if outcome.get("previous_md5")
                else "first retrain of this project")
    fid = (f"FID {_fid_band(outcome, 'fid', 'fid_noise_low', 'fid_noise_high')}" if outcome.get("fid") is not None
           else "FID not measured")
    lines = [f"retrain: dataset version {version} ({previous}), experiment {outcome['experiment']}: {fid}."]
    release = outcome.get("release")
    if kind == "published":
        lines.append(f"Published release {release}" + (f" at {outcome['gallery']}" if outcome.get("gallery") else "")
                     + (f": {outcome['reason']}." if outcome.get("reason") else "."))
    else:
        gate = _gate_lines(outcome.get("comparison"))
        # With the gate's numbers below, its reason (the same numbers in a sentence) would say it all twice.
        why = ("this model's FID is not lower than the published one's by more than the sampling noise "
               "(publish.gate: better_fid)" if gate else outcome.get("reason") or "see the publish record")
        lines += [f"Kept the gallery as it was (release {release}): {why}.", *gate]
    if outcome.get("committed"):
        lines.append(f"Committed the dataset version and its results as {outcome['committed']} (retrain.commit).")
    return CommandResult(lines, data, _retrain_next_steps(outcome))


def _retrain_kind(outcome: Mapping[str, Any]) -> str:
    """The outcome of a result dict without one: the older {status, published} shape."""
    if outcome.get("status") == "nothing to do":
        return "nothing to do"
    return "published" if outcome.get("published") == "published" else "kept"


def _gate_lines(comparison: Mapping[str, Any] | None) -> list[str]:
    """The publish gate's numbers (publish.json's comparison), when it compared two FIDs."""
    if not comparison or comparison.get("previous_fid_compared") is None:
        return []
    basis = "re-scored under this run's settings" if comparison.get("previous_scored_as") == "rescored" else "as recorded"
    new = _fid_band(comparison, "fid", "fid_noise_low", "fid_noise_high")
    published = _fid_band(comparison, "previous_fid_compared", "previous_fid_noise_low", "previous_fid_noise_high")
    return [
        f"  this model: FID {new}; published: FID {published} ({basis})",
        f"  the gate's rule: {comparison.get('rule_text')}",
    ]


def _fid_band(values: Mapping[str, Any], fid: str, low: str, high: str) -> str:
    """"218.8 [214.1, 223.9]": an FID with its sampling-noise band, or alone when there is none."""
    if values.get(low) is None or values.get(high) is None:
        return _number(values[fid])
    return f"{_number(values[fid])} [{_number(values[low])}, {_number(values[high])}]"


def _retrain_next_steps(outcome: Mapping[str, Any]) -> list[str]:
    steps = [f"`dvc exp show` to see experiment {outcome['experiment']}"]
    if outcome.get("to_commit"):
        files = ", ".join(outcome["to_commit"])
        message = retrain_commit_message(outcome["data_md5"], outcome["experiment"])
        steps.insert(0, f'`scenegan commit-version -m "{message}"` to commit {files} (or set retrain.commit: true)')
    return steps


def commit_version_result(committed: VersionCommit) -> CommandResult:
    """`scenegan commit-version`: the commit, the dataset version, the files."""
    version = f"dataset version {short_md5(committed.data_md5)} ({committed.dvc_file or 'no .dvc file'})"
    if committed.commit is None:
        lines = [f"Nothing to commit: {version} and its results are already committed "
                 f"({', '.join(committed.candidates) or 'no files'})."]
    else:
        lines = [f"Committed {committed.commit}: {version}, {plural(len(committed.files), 'file')} "
                 f"({', '.join(committed.files)})."]
    if committed.still_modified:
        lines.append(f"Left uncommitted: {plural(len(committed.still_modified), 'other changed file')} "
                     f"({examples(committed.still_modified, len(committed.still_modified))}); commit them yourself "
                     "if dvc.lock depends on them (params.yaml, dvc.yaml, code).")
    return CommandResult(lines, {"command": "commit-version", **to_jsonable(committed)})


def generate_result(outcome: GenerateOutcome) -> CommandResult:
    """`scenegan generate`: what was written where, from which generator, and how to make any of it again."""
    source, images, walk = outcome.source, outcome.images, outcome.walk
    model = [f"Generator: {shown_path(source.path)}, {source.note}; sha256 {source.sha256[:12]}, "
             f"{outcome.resolution} px, run on {outcome.device} in fp32."]
    model += [f"Note: {source.alternative}."] if source.alternative else []
    data: dict[str, Any] = {"command": "generate", "generator": to_jsonable(source), "device": outcome.device,
                            "resolution": outcome.resolution}
    if walk is not None:
        psi = f", truncation {walk.truncation:g}" if walk.truncation != 1.0 else ""
        scaled = f" ({outcome.resolution} px x{walk.scale})" if walk.scale > 1 else ""
        lines = [
            f"Wrote a latent walk to {shown_path(walk.path)}: {walk.format.upper()}, {walk.frames} frames at "
            f"{walk.fps} fps ({walk.duration_s:.1f} s, loops), {walk.width}x{walk.height} px{scaled}, keyframes = "
            f"seeds {walk.keyframe_seeds[0]}-{walk.keyframe_seeds[-1]}{psi}, {byte_size(walk.size_bytes)}.",
            f"Format: {walk.reason}.",
            *model,
        ]
        return CommandResult(lines, {**data, "walk": to_jsonable(walk)})
    assert images is not None
    psi = f", truncation {images.manifest['truncation']:g}" if images.manifest["truncation"] != 1.0 else ""
    where = f"{shown_path(images.out)} ({'one zip' if images.kind == 'zip' else 'with manifest.json'})"
    seeds = f"seed {images.first_seed}" if images.n == 1 else f"seeds {images.first_seed}-{images.last_seed}"
    lines = [
        f"Wrote {plural(images.n, 'PNG image')} ({seeds}{psi}) to {where}: {byte_size(images.size_bytes)} in "
        f"{images.seconds:.1f} s ({images.images_per_second:.{0 if images.images_per_second >= 10 else 1}f} images/s).",
        *model,
        f"Dataset version (data_md5): {short_md5(images.manifest['dataset_version'])}; "
        f"image i is seed {images.first_seed}+i: `--seed S --n 1` remakes any one of them (same --batch and device).",
    ]
    data["images"] = {key: value for key, value in to_jsonable(images).items() if key != "manifest"}
    data["images"]["images_per_second"] = images.images_per_second
    data["manifest"] = images.manifest
    return CommandResult(lines, data)


def serve_result(params: Params) -> CommandResult:
    settings = params.retrain
    lines = [f"serve: stopped serving deployment {settings.deployment_name} ({settings.cron}, {settings.timezone})."]
    return CommandResult(lines, {"command": "serve", "deployment": settings.deployment_name,
                                 "cron": settings.cron, "timezone": settings.timezone, "stopped": True})


def compare_result(result: Mapping[str, Any], wide: bool = False) -> CommandResult:
    """The table in 120 columns (version, date, FID, KID, drift, images, the params that fit), or all with `wide`."""
    import textwrap

    from ganlib.versions.compare import NO_RESULTS, TERMINAL_WIDTH, per_class_terminal_lines, terminal_table

    table = list(result["table"])
    shown = terminal_table(table[:MAX_TABLE_ROWS], result.get("param_keys") or [], wide=wide)
    lines = shown or [NO_RESULTS]
    if len(table) > MAX_TABLE_ROWS:
        lines.append(f"... and {len(table) - MAX_TABLE_ROWS} more versions (all of them in the files below)")
    # A footnote may list dozens of keys: wrapped, so the output stays within the table's width.
    lines += [line for note in result.get("footnotes") or []
              for line in textwrap.wrap(note, TERMINAL_WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
    # FID per class, a second table under the first (as many as the classes need to fit the width).
    per_class = per_class_terminal_lines(list(result.get("per_class_table") or [])[:MAX_TABLE_ROWS], wide=wide)
    lines += ([""] + per_class if per_class else [])
    lines += [line for note in (result.get("per_class_footnotes") or []) if per_class
              for line in textwrap.wrap(note, TERMINAL_WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
    lines += [f"{kind}: {shown_path(path)}" for kind, path in result["files"].items()]
    return CommandResult(lines, {"command": "compare", **to_jsonable(result)})


def fid_real_result(comparison: DatasetComparison, dataset_a: Path, dataset_b: Path) -> CommandResult:
    from ganlib.metrics.report import render_table

    lines = [f"{shown_path(dataset_a)} vs {shown_path(dataset_b)}:", *render_table(comparison.report_rows()).splitlines()]
    data = {"command": "fid-real", "dataset_a": str(dataset_a), "dataset_b": str(dataset_b), **comparison.to_json()}
    return CommandResult(lines, data)


def preset_list_result(presets: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Sequence[str]],
                       presets_path: Path) -> CommandResult:
    """One line per preset: its first few settings (a preset sets dozens); `scenegan preset NAME` prints them all."""
    if not presets:
        missing = "" if presets_path.exists() else " (no such file)"
        return CommandResult([f"{shown_path(presets_path)}: no presets defined{missing}"],
                             {"command": "preset", "presets": {}})
    # What tells presets apart comes first: a setting that many presets share says little about the choice.
    shared_by = Counter(expression for expressions in overrides.values() for expression in set(expressions))
    lines = []
    for name, expressions in overrides.items():
        ordered = sorted(expressions, key=lambda expression: shared_by[expression])  # stable: file order within
        shown = ", ".join(ordered[:MAX_PRESET_SETTINGS])
        more = f" and {len(ordered) - MAX_PRESET_SETTINGS} more" if len(ordered) > MAX_PRESET_SETTINGS else ""
        lines.append(f"{name}: {shown}{more}")
    data = {"command": "preset", "presets": to_jsonable(presets),
            "overrides": {name: list(expressions) for name, expressions in overrides.items()}}
    return CommandResult(lines, data, [
        "`scenegan preset NAME` for all of a preset's settings, as `dvc exp run` -S flags",
        '`scenegan run train --preset NAME`, or `eval "dvc exp run $(scenegan preset NAME)"`',
    ])


def preset_flags_result(name: str, overrides: Sequence[str]) -> CommandResult:
    """Only the flags, on one line: `$(scenegan preset NAME)` pastes them into `dvc exp run`."""
    import shlex

    flags = [f"-S {shlex.quote(expression)}" for expression in overrides]
    return CommandResult([" ".join(flags)], {"command": "preset", "preset": name, "overrides": list(overrides),
                                              "dvc_exp_run_flags": " ".join(flags)})


def sweep_result(result: Mapping[str, Any]) -> CommandResult:
    """The runs best FID first (name, FID with its noise band, KID, the swept params), what the bands say,
    the report files, and how to look at or promote a run."""
    import textwrap

    from ganlib.versions.compare import FID_HEADING, NOT_COMPARABLE_MARK, TERMINAL_WIDTH, terminal_table

    table = list(result["table"])
    # The experiment's whole name (what `dvc exp apply` takes) and the swept params, before anything else.
    lines = terminal_table(table[:MAX_TABLE_ROWS], result.get("swept_keys") or [], max_cell=48,
                           columns=(NOT_COMPARABLE_MARK, "version", FID_HEADING, "KID"))
    if len(table) > MAX_TABLE_ROWS:
        lines.append(f"... and {len(table) - MAX_TABLE_ROWS} more runs (all of them in the files below)")
    lines += [line for note in [*result.get("summary", []), *(result.get("footnotes") or [])]
              for line in textwrap.wrap(note, TERMINAL_WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
    lines += [f"{kind}: {shown_path(path)}" for kind, path in result["files"].items()]
    lines.append("The runs are DVC experiments: `dvc exp show` lists them with their params and metrics.")
    # DVC's --keep takes regular expressions matched from a column name's start; --drop '.*' drops all the others.
    # FID is the `value` of evaluate's scores/fid.json; its band's keys (low, high) are fid.json's alone.
    keep = "|".join(["Experiment", r".*scores/fid\.json:value", "^low$", "^high$", *(result.get("swept_keys") or [])])
    next_steps = [f"`dvc exp show --drop '.*' --keep '{keep}'` for DVC's table of the runs: FID and the swept params"]
    if result.get("best"):
        next_steps.append(f"`dvc exp apply {result['best']}` to bring the best run into the workspace (then "
                          "`dvc repro publish` to publish it, `scenegan commit-version -m MSG` to keep it)")
    return CommandResult(lines, {"command": "sweep", **to_jsonable(result)}, next_steps)
