"""What the preprocess and train stages recorded about a model, as the model package reports it.

    read_dataset_record(prepared_dir)   counts and QA summary (manifest.json, qa_report.json)
    read_training_record(train_dir)     code digest, precision, time spent training (params.json, stats.jsonl)

Either directory may lack a file (a generator trained before the file
existed, a test's stand-in): its fields are then None and the model card
says "not recorded". A file that exists but cannot be read is an error that
names it and the stage that writes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganlib.data.dataset import MANIFEST_FILE, QA_REPORT_FILE
from ganlib.errors import UserFacingError

TRAIN_PARAMS_FILE = "params.json"   # ganlib/training/loop.py writes both into base.paths.train
TRAIN_STATS_FILE = "stats.jsonl"


class RunRecordError(UserFacingError, RuntimeError):
    """A record another stage wrote is unreadable; the message names it and the stage to re-run."""


@dataclass(frozen=True)
class DatasetRecord:
    images: int | None                    # images in the prepared dataset (what training saw)
    scanned: int | None                   # files preprocess looked at
    rejected: int | None
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    hidden_skipped: int | None = None     # dot-files and dot-directories left out
    near_duplicate_groups: int | None = None
    near_duplicate_copies: int | None = None
    near_duplicate_action: str | None = None   # report | drop (preprocess.near_duplicates)


@dataclass(frozen=True)
class TrainingRecord:
    code_digest: str | None        # digest of the weight-shaping code (ganlib/io/source.py)
    precision: str | None          # what training ran in (fp32, bf16, ...), as decided once per run
    ticks: int                     # stats.jsonl rows
    # Time in training steps, summed over ticks (images shown in a tick / its img/s): the log, grid,
    # checkpoint and FID-curve upkeep between ticks is left out, and so is any time between resumed sessions.
    step_seconds: float | None


def read_dataset_record(prepared_dir: Path) -> DatasetRecord:
    """The prepared dataset's counts and its QA summary (None where preprocess recorded nothing)."""
    manifest = _read_json(prepared_dir / MANIFEST_FILE, "preprocess") or {}
    qa = _read_json(prepared_dir / QA_REPORT_FILE, "preprocess") or {}
    near = qa.get("near_duplicates") if isinstance(qa.get("near_duplicates"), dict) else {}
    reasons = manifest.get("rejects_by_reason")
    return DatasetRecord(
        images=_int(manifest.get("count")),
        scanned=_int(manifest.get("scanned")),
        rejected=_int(manifest.get("rejected")),
        rejects_by_reason={str(k): int(v) for k, v in reasons.items()} if isinstance(reasons, dict) else {},
        hidden_skipped=_int(manifest.get("hidden_skipped")),
        near_duplicate_groups=_int(near.get("groups")),
        near_duplicate_copies=_int(near.get("copies")),
        near_duplicate_action=near.get("action") if isinstance(near.get("action"), str) else None,
    )


def read_training_record(train_dir: Path) -> TrainingRecord:
    """The train stage's run record (params.json "run") and the time its ticks spent in steps."""
    run = (_read_json(train_dir / TRAIN_PARAMS_FILE, "train") or {}).get("run") or {}
    speed = run.get("speed") if isinstance(run.get("speed"), dict) else {}
    ticks = _read_jsonl(train_dir / TRAIN_STATS_FILE, "train")
    return TrainingRecord(
        code_digest=run.get("code_digest") if isinstance(run.get("code_digest"), str) else None,
        precision=speed.get("precision") if isinstance(speed.get("precision"), str) else None,
        ticks=len(ticks),
        step_seconds=step_seconds(ticks),
    )


def step_seconds(ticks: list[dict[str, Any]]) -> float | None:
    """Seconds spent in training steps: each tick's images (kimg since the previous tick) over its img/s."""
    total, previous_kimg = 0.0, 0.0
    for tick in ticks:
        kimg, rate = tick.get("kimg"), tick.get("img_per_s")
        if not (_finite(kimg) and _finite(rate)) or rate <= 0:
            return None   # a tick without its numbers: no total rather than a wrong one
        total += max(0.0, kimg - previous_kimg) * 1000 / rate
        previous_kimg = kimg
    return total if ticks else None


def _read_json(path: Path, stage: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc}); re-run the {stage} stage (`dvc repro {stage}`)") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{path}: expected a JSON object; re-run the {stage} stage (`dvc repro {stage}`)")
    return data


def _read_jsonl(path: Path, stage: str) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc}); re-run the {stage} stage (`dvc repro {stage}`)") from None
    return [row for row in rows if isinstance(row, dict)]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
