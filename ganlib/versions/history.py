"""The retrain history: one row per successful retrain, dataset version -> metrics.

A CSV (base.paths.history) kept in git, so "which dataset version gave the
better model?" has an answer even for experiments that were since removed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

from ganlib.io.atomic import atomic_write_text

# The metrics.json keys a history row (and a comparison row) carries over. A history written before
# a column existed reads it as blank, and is rewritten with the new header at its next row.
METRIC_COLUMNS = ("checkpoint_kimg", "fid", "kid_mean", "kid_std", "is_mean", "is_std",
                  "precision", "recall", "density", "coverage", "memorisation", "n_samples", "extractor")

HISTORY_COLUMNS = (
    "date",
    "data_md5",
    "n_images",
    "experiment",
    "commit",
    *METRIC_COLUMNS,
    "published",
    "release",
    "flow_run",
)


def read_history(path: Path) -> list[dict[str, str]]:
    """All rows, oldest first (missing file: no rows)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_history_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row; unknown keys are an error, missing ones are left blank.

    The file is rewritten atomically: a crash never leaves a torn last line.
    """
    unknown = set(row) - set(HISTORY_COLUMNS)
    if unknown:
        raise ValueError(f"unknown history columns: {sorted(unknown)}")
    rows = read_history(path) + [{key: "" if row.get(key) is None else str(row[key]) for key in HISTORY_COLUMNS}]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def last_data_md5(path: Path) -> str | None:
    """The dataset version of the last successful retrain, if any."""
    rows = read_history(path)
    return rows[-1]["data_md5"] or None if rows else None
