"""One table of metrics across dataset versions.

    compare_versions(repo, revs, params, log)  revisions -> Comparison (one row per version)
    write_comparison(comparison, out_dir)      compare.csv, compare.md, compare.png

A row says which dataset a version used (data.dvc md5, image count), what it
scored (FID/KID/IS from that revision's metrics.json), how far its real data
moved from the previous row's (real-vs-real FID/KID, "drift"), and the value
of every parameter that differs between the compared versions.

The params compared are the ones a run used: the params.json records the
stages wrote where a revision has them, else its params.yaml, less the
`presets` section revisions before presets.yaml kept there (a preset is a
recipe, not a setting any run used). A key that only
some rows have is not a difference: it is listed once, under the table, as
"added in this version" (or "removed") at the first row where it appears.

Comparability: a row whose FID/KID were measured differently from the
scored row above it (n_samples, extractor with its precision, n_reference)
cannot be compared with it, and one trained for another length (kimg) is
an unequal training run; either is marked in the tables and compare.png
does not join the two points with a line. The reference dataset itself is
each version's own data: that it differs is what a comparison of dataset
versions is about (the drift columns measure it), so it marks nothing.

With no revs, every dataset version that has results is compared
(versions.default_revisions): commits that changed data.dvc or the metrics,
tags, DVC experiments, HEAD and the workspace, oldest first (the workspace
last, when it holds results HEAD does not), each (dataset, params, metrics)
shown once. A version without usable metrics is not a row: it is listed as
skipped, one line saying why (`Comparison.skipped`). Named revs are always
rows, with blanks and notes where something is missing.

Per class: when some version's generator was class-conditional and scored
per class (ganlib/metrics/per_class.py), a second table has a column per class
present in any version, its FID with the sampling-noise band: "-" where a
version has no such class (or was not scored per class), "n/a" where it had
too few real images, the reason as a footnote. It answers "did adding
mountain photos in v3 help mountains, and hurt nothing else?". The CSV adds
fid/<class>, fid_low/<class>, fid_high/<class>, kid/<class>, kid_std/<class>.

The CSV holds raw values for machines (full md5s and shas, unrounded
numbers); the markdown and `table_rows` (a Prefect table artifact) are
formatted for people. The retrain history (ganlib.versions.history) can be listed
too: its rows map onto the same columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ganlib.config import Params, flatten_dotted
from ganlib.errors import UserFacingError
from ganlib.formatting import fid_noise_band_text, fid_noise_description, iso_utc, plus_minus, significant
from ganlib.io.atomic import atomic_write_text
from ganlib.io.provenance import DATA_DVC_FILE, short_md5
from ganlib.logs import Logger
from ganlib.metrics.report import METRICS_FILE, with_current_metric_keys
from ganlib.versions.history import METRIC_COLUMNS, read_history
from ganlib.versions.revisions import (
    DVC_READ_ERRORS,
    KIND_PREFERENCE,
    VersionFacts,
    default_revisions,
    error_summary,
    materialize_prepared,
    read_version,
    resolve_revisions,
)

CSV_FILE = "compare.csv"
MARKDOWN_FILE = "compare.md"
PLOT_FILE = "compare.png"
FID_UNCERTAINTY_COLUMNS = ("fid_noise_low", "fid_noise_high", "fid_noise_resamples", "fid_noise_n", "fid_infinity")
# Columns shown (in compare.md, --wide and the table artifact) only when some row was evaluated with them.
PRDC_FIELDS = ("precision", "recall", "density", "coverage", "memorisation")
# The people's table shows FID with its sampling-noise band under this heading; compare.md explains it below.
FID_HEADING = "FID [sampling noise, 95%]"

# The fixed columns, in order; the params that differ follow as one column
# each, named by their dotted key ("train.lr_g"), which never clashes with
# these (no dots). The history's columns of the same meaning share the names.
ROW_COLUMNS = (
    "label", "kind", "commit", "date", "data_md5", "n_images", "resolution", "checkpoint_kimg",
    "fid", "fid_noise_low", "fid_noise_high", "fid_noise_resamples", "fid_noise_n", "fid_infinity", "kid_mean", "kid_std", "is_mean", "is_std",
    "precision", "recall", "density", "coverage", "memorisation", "n_samples", "extractor", "n_reference",
    "drift_fid_from_previous", "drift_kid_from_previous", "near_duplicates_in_previous", "note",
)


@dataclass(frozen=True)
class VersionRow:
    """One dataset version. Anything unknown is None; `notes` say why."""

    label: str
    kind: str                       # tag | branch | experiment | commit | workspace | history
    commit: str | None
    date: str | None                # ISO 8601 UTC: commit time, or when a history row was recorded
    data_md5: str | None
    n_images: int | None
    resolution: int | None
    checkpoint_kimg: float | None
    fid: float | None
    kid_mean: float | None
    kid_std: float | None
    is_mean: float | None
    is_std: float | None
    n_samples: int | None
    extractor: str | None
    drift_fid_from_previous: float | None
    drift_kid_from_previous: float | None
    notes: tuple[str, ...]
    # Images of this version with a perceptual near-duplicate in the previous row's (drift: true only).
    near_duplicates_in_previous: int | None = None
    # FID's sampling-noise band (95%, bootstrap over the generated samples, reference fixed; not an
    # interval on the true FID) and FID-infinity, when that revision's evaluation computed them.
    fid_noise_low: float | None = None
    fid_noise_high: float | None = None
    fid_noise_resamples: int | None = None
    fid_noise_n: int | None = None
    fid_infinity: float | None = None
    n_reference: int | None = None  # real images the FID/KID reference statistics came from
    # Precision/recall/density/coverage and the memorisation figure (ganlib.metrics), where evaluated.
    precision: float | None = None
    recall: float | None = None
    density: float | None = None
    coverage: float | None = None
    memorisation: float | None = None
    params: Mapping[str, Any] | None = field(default=None, compare=False)  # dotted key -> value; None: unknown
    # A class-conditional generator's scores per class, as metrics.json holds them ({class: {fid, fid_low,
    # fid_high, kid, kid_std, n_samples, n_real}}), and why a class has none; None when not evaluated per class.
    per_class: Mapping[str, Mapping[str, Any]] | None = field(default=None, compare=False)
    per_class_reasons: Mapping[str, str] | None = field(default=None, compare=False)

    def class_cell(self, name: str) -> tuple[str, float | None, str | None]:
        """("scored" | "n/a" | "absent", FID, reason) of class `name` in this version."""
        scores = (self.per_class or {}).get(name)
        reason = (self.per_class_reasons or {}).get(name)
        if scores is None and reason is None:
            return "absent", None, None
        fid = _float((scores or {}).get("fid"))
        if reason is not None or fid is None:
            return "n/a", None, reason or "no FID recorded for this class"
        return "scored", fid, None

    def record(self) -> dict[str, Any]:
        """The fixed columns with raw values (notes joined)."""
        values = {name: getattr(self, name) for name in ROW_COLUMNS if name != "note"}
        return {**values, "note": "; ".join(self.notes)}


@dataclass(frozen=True)
class SkippedVersion:
    """A version found by the default search that has no metrics to show, and why."""

    label: str
    kind: str
    commit: str | None
    reason: str

    def line(self) -> str:
        commit = f" {self.commit[:8]}" if self.commit and self.kind != "commit" else ""
        return f"skipped {self.label} ({self.kind}{commit}): {self.reason}"


@dataclass(frozen=True)
class Comparison:
    rows: tuple[VersionRow, ...]
    param_keys: tuple[str, ...]     # dotted params whose value differs between the rows
    plot_metrics: tuple[str, ...]   # columns plotted by default (compare.plot_metrics)
    # Keys only some rows have (a footnote, never a column): "added in this version".
    added_param_keys: tuple[str, ...] = ()
    skipped: tuple[SkippedVersion, ...] = ()  # versions found without metrics (default search only)

    @property
    def columns(self) -> list[str]:
        return [*ROW_COLUMNS, NOT_COMPARABLE_COLUMN, *self.param_keys, *self._class_columns()]

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class some version was scored on (or has a reason for), in order of first appearance."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row.per_class or {}))
            seen.update(dict.fromkeys(row.per_class_reasons or {}))
        return tuple(seen)

    def records(self) -> list[dict[str, Any]]:
        """Raw values per row, fixed columns, why a row is not comparable, the differing params (absent: None),
        then each class's FID, its band and KID (CLASS_CSV_FIELDS; absent or too few images: None)."""
        reasons = not_comparable_reasons(self.rows)
        return [{**row.record(), NOT_COMPARABLE_COLUMN: "; ".join(why),
                 **{key: _param_value(row, key) for key in self.param_keys},
                 **_class_values(row, self.classes)}
                for row, why in zip(self.rows, reasons)]

    def _class_columns(self) -> list[str]:
        return [f"{field_name}/{name}" for name in self.classes for field_name in CLASS_CSV_FIELDS]

    def per_class_records(self) -> list[dict[str, Any]]:
        """Per version, every class's numbers as metrics.json holds them and the reasons (what --json shows)."""
        return [{"label": row.label, "commit": row.commit, "per_class": dict(row.per_class or {}),
                 "per_class_reasons": dict(row.per_class_reasons or {})} for row in self.rows]

    def per_class_table_rows(self) -> list[dict[str, str]]:
        """Rows for people: the version, then each class's FID with its band; "-" where the version has no such
        class, "n/a" where it had too few images (per_class_footnotes say why). Empty when no version has classes."""
        classes = self.classes
        if not classes:
            return []
        return [{"version": row.label, **{name: _class_display(row, name) for name in classes}} for row in self.rows]

    def per_class_footnotes(self, text: Callable[[str], str] = str) -> list[str]:
        """Why each "n/a" of the per-class table has no number, one line per version and class."""
        notes = []
        for row in self.rows:
            for name in self.classes:
                kind, _, reason = row.class_cell(name)
                if kind == "n/a":
                    # Reasons written by evaluate start with the class's name already ("night: 30 real images ...").
                    said = reason if reason.startswith(f"{name}:") else f"{name}: {reason}"
                    notes.append(f"n/a in {text(row.label)}: {text(said)}")
        return notes

    def footnotes(self, text: Callable[[str], str] = str) -> list[str]:
        """What the table leaves out or marks: params only some rows have, and the rows marked not comparable.

        `text` shows a value from a revision (label, key, extractor): markdown_text for compare.md, str for a terminal.
        """
        notes = [text(skipped.line()) for skipped in self.skipped]
        notes += [f"{text(label)}: {what}: {', '.join(map(text, keys))}"
                  for label, what, keys in key_changes(self.rows, self.added_param_keys)]
        for row, why in zip(self.rows, not_comparable_reasons(self.rows)):
            if why:
                notes.append(f"{NOT_COMPARABLE_MARK} {text(row.label)}: not comparable with the scored row "
                             f"above it ({'; '.join(map(text, why))}); compare.png does not join them")
        return notes

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for record in self.records():
            writer.writerow({key: _csv_value(value) for key, value in record.items()})
        return buffer.getvalue()

    def table_rows(self) -> list[dict[str, str]]:
        """Rows for people (a Prefect table artifact): short hashes, rounded numbers, KID ± std."""
        with_infinity = any(row.fid_infinity is not None for row in self.rows)  # a column only when some row has it
        with_prdc = any(getattr(row, key) is not None for row in self.rows for key in PRDC_FIELDS)
        reasons = not_comparable_reasons(self.rows)
        return [_display_row(row, self.param_keys, with_infinity, bool(why), with_prdc)
                for row, why in zip(self.rows, reasons)]

    def to_markdown(self, title: str = "Metrics per dataset version") -> str:
        rows = self.table_rows()
        lines = [f"# {title}", ""]
        extractors = sorted({row.extractor for row in self.rows if row.extractor})
        if len(extractors) > 1:
            lines += [f"Rows were scored with different extractors ({', '.join(map(markdown_text, extractors))}): "
                      "their FID/KID are not comparable with each other.", ""]
        if not rows:
            return "\n".join(lines + [NO_RESULTS, "", *(f"{note}  " for note in self.footnotes(markdown_text))])
        header = list(rows[0])
        lines.append("| " + " | ".join(markdown_text(key) for key in header) + " |")  # param keys come from revisions too
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            lines.append("| " + " | ".join(markdown_text(row[key]) for key in header) + " |")
        footnotes = self.footnotes(markdown_text)
        lines += ["", *(f"{note}  " for note in footnotes)] if footnotes else []  # two spaces: a markdown line break
        return "\n".join(lines + self.fid_noise_legend() + self._per_class_markdown()) + "\n"

    def _per_class_markdown(self) -> list[str]:
        """The per-class table under the first: a column per class (none when no version was scored per class)."""
        rows = self.per_class_table_rows()
        if not rows:
            return []
        header = list(rows[0])
        lines = ["", f"## {PER_CLASS_TITLE}", "", PER_CLASS_LEGEND, "",
                 "| " + " | ".join(markdown_text(key) for key in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(markdown_text(row[key]) for key in header) + " |" for row in rows]
        notes = self.per_class_footnotes(markdown_text)
        return lines + (["", *(f"{note}  " for note in notes)] if notes else [])

    def fid_noise_legend(self) -> list[str]:
        """Lines saying what the bracketed FID band is, one per distinct (resamples, n); none without bands."""
        kinds = sorted({(row.fid_noise_resamples, row.fid_noise_n) for row in self.rows
                        if row.fid_noise_low is not None and row.fid_noise_high is not None},
                       key=lambda kind: tuple(-1 if part is None else part for part in kind))
        if not kinds:
            return []
        described = "; or ".join(fid_noise_description(resamples, n).removesuffix("; reference fixed")
                                 for resamples, n in kinds)
        return ["", f"{FID_HEADING}: the FID's sampling noise, a {described}, the reference statistics held "
                    "fixed. How far FID moves between draws of that many generated samples; not a confidence "
                    "interval on the true FID."]

    def plot_png(self, path: Path, metric: str | Sequence[str] | None = None) -> Path:
        """A PNG of `metric` (or each of several, one panel each; default compare.plot_metrics) per version."""
        from ganlib.versions.plot import plot_metrics_png

        metrics = self.plot_metrics if metric is None else ((metric,) if isinstance(metric, str) else tuple(metric))
        return plot_metrics_png(self.rows, metrics, Path(path))


# --------------------------------------------------------------------------- building


def compare_versions(repo: Path, revs: Sequence[str], params: Params, log: Logger) -> Comparison:
    """One row per revision (or, with no revs, per dataset version found); see the module doc.

    `params` are the current ones: compare.* says what to include, and the
    drift FID/KID use evaluate.* (extractor, n_reference, seed) and the
    reference-statistics cache under `repo`. A revision that does not exist
    raises versions.RevisionError; a revision missing data or metrics is a
    row with blanks and a note.
    """
    repo = Path(repo).resolve()
    settings = params.compare
    if revs:
        revisions, skipped = resolve_revisions(repo, revs), []
    else:
        version_files = (DATA_DVC_FILE, f"{params.base.paths.evaluate}/{METRICS_FILE}")
        revisions = default_revisions(repo, log, version_files)
    facts = [read_version(repo, revision, params.base.paths) for revision in revisions]
    if not revs:
        facts, skipped = scored_versions(deduplicate_versions(facts))
        for item in skipped:
            log.info(item.line())
    rows = recorded_keys_only([version_row(f) for f in facts], facts)
    for row in rows:
        log.info(f"{row.label} ({row.kind} {(row.commit or '')[:8]}): dataset {short_md5(row.data_md5)}, "
                 f"{_display(row.n_images)} images, FID {_display(row.fid)}"
                 + "".join(f"\n  note: {note}" for note in row.notes))
    if settings.drift:
        rows = with_drift(rows, facts, repo, params, log)
    if settings.include_history:
        rows = history_rows(repo / params.base.paths.history, rows, log) + rows
    return Comparison(tuple(rows), differing_param_keys(rows), tuple(settings.plot_metrics), added_param_keys(rows),
                      tuple(skipped))


# What compare says when no version has metrics (markdown, terminal).
NO_RESULTS = ("No dataset version has results yet: run `dvc repro`, then `scenegan commit-version -m MSG` "
              "to keep them with their dataset version.")


def scored_versions(facts: Sequence[VersionFacts]) -> tuple[list[VersionFacts], list[SkippedVersion]]:
    """(versions with metrics, the others as SkippedVersion saying why), order kept."""
    scored = [item for item in facts if item.metrics is not None]
    skipped = [SkippedVersion(item.revision.label, item.revision.kind, item.revision.sha, _why_no_metrics(item))
               for item in facts if item.metrics is None]
    return scored, skipped


def _why_no_metrics(facts: VersionFacts) -> str:
    reason = next((note for note in facts.notes if note.startswith("no metrics")), "no metrics")
    return f"dataset {short_md5(facts.data_md5)}, {reason}" if facts.data_md5 else reason


def version_row(facts: VersionFacts) -> VersionRow:
    metrics, prepared, revision = facts.metrics or {}, facts.prepared, facts.revision
    per_class, reasons = metrics.get("per_class"), metrics.get("per_class_reasons")
    return VersionRow(
        per_class=per_class if isinstance(per_class, Mapping) else None,
        per_class_reasons=reasons if isinstance(reasons, Mapping) else None,
        label=revision.label,
        kind=revision.kind,
        commit=revision.sha,
        date=None if revision.timestamp is None else iso_utc(revision.timestamp),
        data_md5=facts.data_md5,
        n_images=None if prepared is None else prepared.count,
        resolution=None if prepared is None else prepared.resolution,
        **_metric_fields(metrics),
        drift_fid_from_previous=None,
        drift_kid_from_previous=None,
        notes=facts.notes,
        params=used_params(facts),
    )


def used_params(facts: VersionFacts) -> dict[str, Any] | None:
    """Dotted params a run at this revision used: its stages' records, else params.yaml less any old `presets`."""
    if facts.used_params is not None:
        return flatten_dotted(facts.used_params)
    if facts.params is None:
        return None
    return flatten_dotted({key: value for key, value in facts.params.items() if key != "presets"})


def recorded_keys_only(rows: Sequence[VersionRow], facts: Sequence[VersionFacts]) -> list[VersionRow]:
    """Rows whose params come from params.yaml keep only keys some stage recorded, when any revision has records.

    A stage records what it depends on; params.yaml also holds settings no run uses (retrain.*,
    compare.*): an older revision without records would otherwise list every one of those as
    "removed" next to a revision with records.
    """
    recorded = {key for f in facts if f.used_params is not None for key in flatten_dotted(f.used_params)}
    if not recorded:
        return list(rows)
    return [row if f.used_params is not None or row.params is None
            else replace(row, params={k: v for k, v in row.params.items() if k in recorded})
            for row, f in zip(rows, facts)]


def _metric_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The METRIC_COLUMNS of a metrics.json or a history row (CSV text), typed for a VersionRow."""
    values = with_current_metric_keys(values)   # an old revision's metrics.json may name the band fid_ci_*
    fields: dict[str, Any] = {key: _float(values.get(key)) for key in METRIC_COLUMNS}
    fields["n_samples"] = _int(values.get("n_samples"))
    fields["extractor"] = values.get("extractor") or None
    fields["n_reference"] = _int(values.get("n_reference"))
    # Not in the history's columns; metrics.json from before they existed has none: None.
    fields.update({key: _float(values.get(key)) for key in FID_UNCERTAINTY_COLUMNS})
    fields.update({key: _int(values.get(key)) for key in ("fid_noise_resamples", "fid_noise_n")})
    return fields


def deduplicate_versions(facts: Sequence[VersionFacts]) -> list[VersionFacts]:
    """One entry per (dataset, params, scores), keeping the best-named; order kept.

    Among revisions with the same dataset and params, those without usable
    metrics (e.g. the commit that changed data.dvc before `dvc repro`) are
    dropped when another one has them.
    """
    groups: dict[str, list[VersionFacts]] = {}
    for item in facts:
        groups.setdefault(_canonical([item.data_md5, item.params]), []).append(item)
    keep: set[int] = set()
    for members in groups.values():
        scored = [m for m in members if m.metrics is not None] or members
        by_result: dict[str, list[VersionFacts]] = {}
        for member in scored:
            by_result.setdefault(_canonical(_result_key(member)), []).append(member)
        for same in by_result.values():
            keep.add(id(min(same, key=lambda m: KIND_PREFERENCE.index(m.revision.kind))))
    return [item for item in facts if id(item) in keep]


def differing_param_keys(rows: Sequence[VersionRow]) -> tuple[str, ...]:
    """Dotted keys that every row with params has, with a value not the same in all of them.

    A key only some rows have is no difference (the older run did not have
    the setting at all): added_param_keys lists those.
    """
    known = [row.params for row in rows if row.params is not None]
    shared = set.intersection(*(set(params) for params in known)) if known else set()
    return tuple(key for key in sorted(shared) if len({_canonical(p[key]) for p in known}) > 1)


def added_param_keys(rows: Sequence[VersionRow]) -> tuple[str, ...]:
    """Dotted keys that some rows with params have and others lack."""
    known = [row.params for row in rows if row.params is not None]
    if not known:
        return ()
    everywhere = set.intersection(*(set(params) for params in known))
    return tuple(sorted({key for params in known for key in params} - everywhere))


def key_changes(rows: Sequence[VersionRow], keys: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """(row label, "added in this version" | "removed in this version", keys): each key once, where it first changes."""
    known = [row for row in rows if row.params is not None]
    found: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        for previous, current in zip(known, known[1:]):
            before, now = key in previous.params, key in current.params
            if before != now:
                what = "added in this version" if now else "removed in this version"
                found.setdefault((current.label, what), []).append(key)
                break  # once per key: where it first appears (or goes)
    return [(label, what, sorted(found_keys)) for (label, what), found_keys in found.items()]


# --------------------------------------------------------------------------- comparability

NOT_COMPARABLE_MARK = "≠"
NOT_COMPARABLE_COLUMN = "not_comparable_with_previous"
# What makes two scored rows not comparable: how the FID/KID were measured (n_samples, the
# extractor with its precision, n_reference), and how long the generator trained (kimg: a
# legitimate difference between versions, but the runs are then unequal).
COMPARABILITY_FIELDS = (
    ("checkpoint_kimg", "kimg"), ("n_samples", "n_samples"), ("extractor", "extractor"), ("n_reference", "n_reference"),
)


def not_comparable_reasons(rows: Sequence[VersionRow]) -> list[tuple[str, ...]]:
    """Per row, how it differs from the scored row above it ("kimg 16 vs 48"); () when comparable or unscored.

    A field unknown on either side (an old metrics.json, a history row) marks nothing: unknown is not different.
    """
    reasons: list[tuple[str, ...]] = []
    previous: VersionRow | None = None
    for row in rows:
        if row.fid is None and row.kid_mean is None:
            reasons.append(())
            continue
        reasons.append(() if previous is None else _differences(previous, row))
        previous = row
    return reasons


def _differences(previous: VersionRow, row: VersionRow) -> tuple[str, ...]:
    found = []
    for name, shown in COMPARABILITY_FIELDS:
        before, now = getattr(previous, name), getattr(row, name)
        if before is not None and now is not None and before != now:
            found.append(f"{shown} {_display_value(now)} vs {_display_value(before)}")
    return tuple(found)


def comparable_segments(rows: Sequence[VersionRow]) -> list[list[int]]:
    """Row indices in runs that a plot may join with a line: a new segment starts at each non-comparable row."""
    segments: list[list[int]] = []
    for index, why in enumerate(not_comparable_reasons(rows)):
        if why or not segments:
            segments.append([])
        segments[-1].append(index)
    return segments


def _display_value(value: Any) -> str:
    return _display(value) if isinstance(value, (int, float)) else str(value)


# --------------------------------------------------------------------------- drift


def with_drift(
    rows: Sequence[VersionRow], facts: Sequence[VersionFacts], repo: Path, params: Params, log: Logger
) -> list[VersionRow]:
    """Each row's real-vs-real FID/KID from the previous row's prepared dataset.

    Identical images (same sha256) are 0 without computing anything; data
    that cannot be read or compared leaves the drift blank with a note.
    """
    from ganlib.data.near_duplicates import count_near_duplicates_between
    from ganlib.metrics.evaluate import compare_datasets  # torch: imported only when drift is wanted

    want_kid = "kid" in params.evaluate.metrics
    result = list(rows[:1])
    with tempfile.TemporaryDirectory(prefix="scenegan-compare-") as scratch:
        copies = _PreparedCopies(repo, Path(scratch))
        for previous, current, row in zip(facts, facts[1:], rows[1:]):
            pair = f"{previous.revision.label} -> {current.revision.label}"
            if previous.prepared is None or current.prepared is None:
                missing = previous if previous.prepared is None else current
                result.append(_drift_unavailable(row, pair, _why_no_prepared(missing)))
            elif previous.prepared.images_sha256 == current.prepared.images_sha256:
                result.append(replace(row, drift_fid_from_previous=0.0, drift_kid_from_previous=0.0 if want_kid else None,
                                      near_duplicates_in_previous=row.n_images))
            else:
                try:
                    log.info(f"drift {pair}: real-vs-real FID and near-duplicates")
                    drift = compare_datasets(copies.directory(previous), copies.directory(current), params, log, repo)
                    near = count_near_duplicates_between(
                        copies.hashes(previous), copies.hashes(current), params.preprocess.near_duplicate_distance)
                except (UserFacingError, *DVC_READ_ERRORS) as exc:
                    result.append(_drift_unavailable(row, pair, error_summary(exc)))
                else:
                    notes = row.notes + tuple(f"drift: {note}" for note in drift.notes)
                    result.append(replace(
                        row, drift_fid_from_previous=drift.fid, drift_kid_from_previous=drift.kid_mean, notes=notes,
                        near_duplicates_in_previous=near,
                    ))
            copies.keep_only(current)
    return result


class _PreparedCopies:
    """Local copies of revisions' prepared datasets, one per distinct content, at most two at a time.

    Copies go under `scratch` and are deleted once the next pair no longer
    needs them, so comparing many versions of a large dataset needs the disk
    space of two, not all. Their perceptual hashes are kept as long as the
    copy, so a version compared with the one before and the one after is
    hashed once.
    """

    def __init__(self, repo: Path, scratch: Path):
        self.repo, self.scratch = repo, scratch
        self.local: dict[str, Path] = {}
        self.phashes: dict[str, list[int]] = {}

    def hashes(self, item: VersionFacts) -> list[int]:
        """The pHash of every image of `item`'s prepared dataset (ganlib.data.near_duplicates)."""
        from ganlib.data.dataset import open_prepared
        from ganlib.data.near_duplicates import dataset_hashes

        sha = item.prepared.images_sha256
        if sha not in self.phashes:
            self.phashes[sha] = dataset_hashes(open_prepared(self.directory(item)).images)
        return self.phashes[sha]

    def directory(self, item: VersionFacts) -> Path:
        sha = item.prepared.images_sha256
        if sha not in self.local:
            self.local[sha] = materialize_prepared(self.repo, item.revision, item.prepared, self.scratch / sha[:16])
        return self.local[sha]

    def keep_only(self, item: VersionFacts) -> None:
        keep = item.prepared.images_sha256 if item.prepared else None
        for sha in [s for s in self.local if s != keep]:
            self.phashes.pop(sha, None)
            directory = self.local.pop(sha)
            # Only copies this object made: never the workspace's own data, and
            # resolved, so that no `..` or link can point the deletion elsewhere.
            if directory.resolve().parent == self.scratch.resolve():
                shutil.rmtree(directory, ignore_errors=True)


def _why_no_prepared(facts: VersionFacts) -> str:
    """Which version's prepared dataset is missing, why, and how to get it (its read note says)."""
    why = next((note for note in facts.notes if "prepared" in note), "no prepared dataset recorded")
    return f"{facts.revision.label} has no usable prepared dataset: {why}"


def _drift_unavailable(row: VersionRow, pair: str, reason: str) -> VersionRow:
    return replace(row, notes=row.notes + (f"drift unavailable ({pair}): {reason}",))


# --------------------------------------------------------------------------- history


def history_rows(path: Path, rows: Sequence[VersionRow], log: Logger) -> list[VersionRow]:
    """The retrain history (ganlib.versions.history) as rows, minus experiments already listed."""
    # The history's commit is HEAD when the row was recorded, not the experiment's: match by name.
    listed = {row.label for row in rows if row.kind == "experiment"}
    found = []
    for record in read_history(path):
        if record.get("experiment") in listed:
            continue
        found.append(VersionRow(
            label=record.get("experiment") or record.get("date") or "history",
            kind="history",
            commit=record.get("commit") or None,
            date=record.get("date") or None,
            data_md5=record.get("data_md5") or None,
            n_images=_int(record.get("n_images")),
            resolution=None,
            **_metric_fields(record),
            drift_fid_from_previous=None,
            drift_kid_from_previous=None,
            notes=("from the retrain history",),
        ))
    log.info(f"{len(found)} row(s) from the retrain history {path}")
    return found


# --------------------------------------------------------------------------- writing


def write_comparison(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """compare.csv, compare.md and compare.png in out_dir, each written atomically."""
    out_dir = Path(out_dir)
    written = {
        "csv": atomic_write_text(out_dir / CSV_FILE, comparison.to_csv()),
        "markdown": atomic_write_text(out_dir / MARKDOWN_FILE, comparison.to_markdown()),
    }
    written["png"] = comparison.plot_png(out_dir / PLOT_FILE)
    return written


# --------------------------------------------------------------------------- formatting


def _display_row(
    row: VersionRow, param_keys: Sequence[str], with_infinity: bool = False, not_comparable: bool = False,
    with_prdc: bool = False,
) -> dict[str, str]:
    shown = {
        NOT_COMPARABLE_MARK: NOT_COMPARABLE_MARK if not_comparable else "",
        "version": row.label,
        "kind": row.kind,
        "commit": (row.commit or "")[:8],
        "date": (row.date or "")[:10],
        "dataset": short_md5(row.data_md5),
        "images": _display(row.n_images),
        "kimg": _display(row.checkpoint_kimg),
        FID_HEADING: _fid_with_band(row),
        **({"FID-inf": _display(row.fid_infinity)} if with_infinity else {}),
        "KID": plus_minus(row.kid_mean, row.kid_std, _display, missing=""),
        "IS": plus_minus(row.is_mean, row.is_std, _display, missing=""),
        **({"precision / recall": _pair(row.precision, row.recall),
            "density / coverage": _pair(row.density, row.coverage),
            "memorisation": _display(row.memorisation)} if with_prdc else {}),
        "samples": _display(row.n_samples),
        "drift FID": _display(row.drift_fid_from_previous),
        "drift KID": _display(row.drift_kid_from_previous),
        "near-dups in previous": _display(row.near_duplicates_in_previous),
    }
    shown.update({key: _display_param(row, key) for key in param_keys})
    shown["note"] = "; ".join(row.notes)
    return shown


# The per-class table (compare.md, the terminal, a Prefect table artifact): a column per class.
PER_CLASS_TITLE = "FID per class [sampling noise, 95%]"
PER_CLASS_LEGEND = ("Each class's samples against that class's real images only (evaluate.per_class_samples says which); "
                    "- : the version has no such class (or was not scored per class); n/a : too few real images, "
                    "the reason below.")
# Per class in compare.csv and records(): "fid/night", "fid_low/night", ... (a "/" never appears in the other columns).
CLASS_CSV_FIELDS = ("fid", "fid_low", "fid_high", "kid", "kid_std")


def _class_values(row: VersionRow, classes: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in classes:
        scores = (row.per_class or {}).get(name) or {}
        values.update({f"{field_name}/{name}": _float(scores.get(field_name)) for field_name in CLASS_CSV_FIELDS})
    return values


def _class_display(row: VersionRow, name: str) -> str:
    kind, fid, _ = row.class_cell(name)
    if kind == "absent":
        return "-"
    if kind == "n/a":
        return "n/a"
    scores = row.per_class[name]
    low, high = _float(scores.get("fid_low")), _float(scores.get("fid_high"))
    band = "" if low is None or high is None else " " + fid_noise_band_text(low, high, _display)
    return f"{_display(fid)}{band}"


def _pair(first: float | None, second: float | None) -> str:
    """ "0.612 / 0.404"; blank when neither is known."""
    if first is None and second is None:
        return ""
    return f"{significant(first, 3, missing='?')} / {significant(second, 3, missing='?')}"


def _fid_with_band(row: VersionRow) -> str:
    """FID and, when recorded, its sampling-noise band: "218.8 [214.1, 223.9]" (FID_HEADING says what it is)."""
    if row.fid is None or row.fid_noise_low is None or row.fid_noise_high is None:
        return _display(row.fid)
    return f"{_display(row.fid)} {fid_noise_band_text(row.fid_noise_low, row.fid_noise_high, _display)}"


_display = partial(significant, digits=4, missing="")   # the table's precision: 218.8, 0.01235


def _display_param(row: VersionRow, key: str) -> str:
    if row.params is None or key not in row.params:
        return ""
    value = row.params[key]
    return value if isinstance(value, str) else json.dumps(value)


def _param_value(row: VersionRow, key: str) -> Any:
    return None if row.params is None else row.params.get(key)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict, bool)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


# Labels, notes, extractors and param keys and values come from git revisions, tags and experiments
# that anyone with push access names, and the Prefect UI renders this markdown: each is shown as text.
_MARKDOWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "|": "\\|", "`": "\\`"}
_MARKDOWN_SPECIAL = re.compile(r"[&<>\\|`]")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def markdown_text(text: str) -> str:
    """`text` as literal markdown inline text: no HTML, no link or image, no table cell or line break.

    HTML's `&<>` become entities (so `<script>` and autolinks `<http://...>`
    stay text); backslash, pipe and backtick are escaped (a pipe would end the
    table cell, a backtick open a code span); `](` is broken so that no
    `[text](url)` link or `![](url)` image (which the browser would load) forms;
    control characters and line breaks become one space, keeping the row one
    line. Emphasis (`*`, `_`) is left alone: cosmetic, and `_` is in param keys.
    """
    escaped = _MARKDOWN_SPECIAL.sub(lambda match: _MARKDOWN_ESCAPES[match.group()], _LINE_BREAKS.sub(" ", str(text)))
    return escaped.replace("](", "]\\(")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _result_key(facts: VersionFacts) -> list[Any]:
    metrics = facts.metrics or {}
    return [metrics.get(k) for k in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "checkpoint_kimg", "n_samples", "extractor")]


# --------------------------------------------------------------------------- terminal

TERMINAL_WIDTH = 120
# What the terminal shows first, in order of priority; the differing params follow while they fit.
TERMINAL_COLUMNS = (NOT_COMPARABLE_MARK, "version", "date", FID_HEADING, "KID", "drift FID", "images")
MAX_TERMINAL_CELL = 28   # a long tag or experiment name is cut, not allowed to push FID off the screen


def terminal_table(
    table: Sequence[Mapping[str, str]], param_keys: Sequence[str], width: int = TERMINAL_WIDTH, wide: bool = False,
    columns: Sequence[str] = TERMINAL_COLUMNS, max_cell: int = MAX_TERMINAL_CELL,
) -> list[str]:
    """`table` (Comparison.table_rows) as text lines no wider than `width`, or every column when `wide`.

    `columns` come first, in order, then `param_keys` while they fit; cells are cut at `max_cell`
    characters. Columns absent from the table are skipped (a history-only table has no params). The
    params that do not fit are summarised on one line after the table, pointing at --wide.
    """
    if not table:
        return []
    if wide:
        return render_columns(table, list(table[0]))
    rows = [{key: _cut(str(value), max_cell) for key, value in row.items()} for row in table]
    chosen = _columns_that_fit([c for c in columns if c in rows[0]], rows, width)
    params = [key for key in param_keys if key in rows[0]]
    shown_params = _columns_that_fit(params, rows, width, chosen)[len(chosen):]
    lines = render_columns(rows, chosen + shown_params)
    hidden = len(params) - len(shown_params)
    if hidden:
        lines.append(f"+{hidden} params differ (--wide; all of them in compare.md and compare.csv)")
    return lines


def per_class_terminal_lines(
    table: Sequence[Mapping[str, str]], width: int = TERMINAL_WIDTH, wide: bool = False,
    max_cell: int = MAX_TERMINAL_CELL,
) -> list[str]:
    """The per-class table (Comparison.per_class_table_rows) as text: the title, then the classes in as many
    tables as it takes for each to fit `width`, the version column repeated in each (all in one with `wide`)."""
    if not table:
        return []
    rows = [{key: _cut(str(value), max_cell) for key, value in row.items()} for row in table]
    classes = [key for key in rows[0] if key != "version"]
    if wide:
        return [PER_CLASS_TITLE, *render_columns(table, list(table[0]))]
    lines = [PER_CLASS_TITLE]
    while classes:
        chosen = _columns_that_fit(classes, rows, width, ["version"])[1:] or classes[:1]  # one at least, however wide
        lines += render_columns(rows, ["version", *chosen])
        classes = [name for name in classes if name not in chosen]
        if classes:
            lines.append("")
    return lines


def render_columns(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> list[str]:
    """A plain-text table: header, rule, one line per row, columns two spaces apart."""
    widths = {c: _column_width(rows, c) for c in columns}
    header = "  ".join(c.ljust(widths[c]) for c in columns).rstrip()
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return [header, rule, *body]


def _columns_that_fit(
    candidates: Sequence[str], rows: Sequence[Mapping[str, str]], width: int, chosen: Sequence[str] = (),
) -> list[str]:
    """`chosen` plus each candidate, in order, that still fits in `width` (a wide one skipped, a later narrow one kept)."""
    kept = list(chosen)
    used = sum(_column_width(rows, c) for c in kept) + 2 * max(0, len(kept) - 1)
    for column in candidates:
        extra = _column_width(rows, column) + (2 if kept else 0)
        if used + extra <= width:
            kept.append(column)
            used += extra
    return kept


def _column_width(rows: Sequence[Mapping[str, str]], column: str) -> int:
    return max(len(column), *(len(str(row[column])) for row in rows))


def _cut(text: str, limit: int = MAX_TERMINAL_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
