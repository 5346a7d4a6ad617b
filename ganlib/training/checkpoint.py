"""Training checkpoints: full state, written atomically, checked before reuse.

A checkpoint holds everything that determines the rest of a run (networks,
optimisers, gradient scalers, counters, the data sampler, every RNG), as
tensors and primitives only, so it loads with torch.load(weights_only=True).

Runs are identified by a fingerprint of the parameters that change what is
computed, the dataset's content hash and a digest of the code that shapes the
weights (ganlib/io/source.py: the modules the training loop reaches, minus
those that never shape a number, as tokens without comments, docstrings,
formatting or message text). Checkpoints live in
`<checkpoints>/<fingerprint>/`, so a rerun after an interruption finds its
own checkpoints, while a params, data or code change starts a new directory
without touching the old one. Without the code, an edited model or GAN step
would resume the finished checkpoint, train nothing and publish the old
generator. Keys that only change how long or how fast we train (kimg, tick
length, compile, ...) are left out of the fingerprint, which is what lets a
larger `kimg` continue the last checkpoint.

A checkpoint records each code file's digest, so a refused resume names the
files whose code changed; `train.resume: accept_code_change` continues such a
checkpoint on purpose (ganlib/training/loop.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlib.config import Params, flatten_dotted, params_fingerprint
from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_bytes, atomic_write_json
from ganlib.io.source import CodeDigest, result_code_digest

FORMAT = "scenegan-checkpoint/1"

# Keys that do not change what training computes (length, upkeep, speed
# knobs, where files go). kimg is here even under a cosine schedule: the
# schedule's own length (schedule_kimg, by default kimg, written out by
# _with_schedule_length) is what shapes the steps. nproc is here because a
# run's math depends on microbatch, not on how many processes share the
# microbatches. The node layout keys (nnodes, rdzv_*, node_rank) are here for
# the same reason: the ranks compute the same step on one machine or several,
# and which machine a rank runs on changes nothing (tests/test_multinode.py),
# so a run keeps its checkpoints when it moves between one machine and a
# cluster. They still have to add up: nnodes * nproc * microbatch divides
# batch_size (config.py).
NON_COMPUTATIONAL_KEYS = (
    "base.device",
    "base.paths",
    "train.kimg",
    "train.tick_kimg",
    "train.keep_last",
    "train.resume",
    "train.compile",
    "train.channels_last",
    "train.data_on_device",
    "train.check_finite_every",
    "train.nproc",
    "train.nnodes",
    "train.rdzv_endpoint",
    "train.rdzv_id",
    "train.node_rank",
    "train.grid_size",
)

# Where the code that shapes a run's weights starts: the training loop. What it reaches
# (networks, losses, penalties, schedules, EMA, augmentation, data order, the prepared-data
# reader), short of the modules that never shape a number, is the code a run is keyed by.
TRAINING_CODE_ENTRIES = ("ganlib.training.loop",)
RUN_RECORD_FILE = "run.json"
# The project root of the code that is running (ganlib/training/checkpoint.py -> root).
_CODE_ROOT = Path(__file__).resolve().parents[2]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint is unreadable, of another format, or belongs to another run."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that cannot be read at all (truncated by a full disk, a copy cut short)."""


CODE_KEY = "code.digest"  # the key of `compared` that holds the training code's digest


@dataclass(frozen=True)
class RunIdentity:
    fingerprint: str            # directory name under base.paths.checkpoints
    compared: dict[str, Any]    # dotted key -> value: what a checkpoint must match to be resumed
    code_files: dict[str, str]  # path -> digest of each file the code digest covers


@dataclass(frozen=True)
class RunRecord:
    """What one run directory holds: its newest checkpoint and the identity it was made under."""

    run_dir: Path
    newest: Path
    compared: dict[str, Any]
    code_files: dict[str, str]  # empty for checkpoints older than per-file digests
    speed: dict[str, Any]       # the precision/channels_last the run used ({} when not recorded)


def run_identity(params: Params, dataset_sha256: str, code: CodeDigest | None = None) -> RunIdentity:
    """The run's checkpoint directory name and what a checkpoint must match to be resumed.

    `code` defaults to training_code() of the code that is running.
    """
    code = code if code is not None else training_code()
    params = _with_schedule_length(params)
    excluded = NON_COMPUTATIONAL_KEYS
    params_hash = params_fingerprint(params, "base", "train", exclude=excluded)
    fingerprint = hashlib.sha256(f"{params_hash}:{dataset_sha256}:{code.digest}".encode()).hexdigest()[:16]
    compared = flatten_dotted(params.section_dict("base", "train"))
    for key in excluded:
        compared = {k: v for k, v in compared.items() if k != key and not k.startswith(key + ".")}
    compared["dataset.sha256"] = dataset_sha256
    compared[CODE_KEY] = code.digest
    return RunIdentity(fingerprint=fingerprint, compared=compared, code_files=dict(code.files))


def _with_schedule_length(params: Params) -> Params:
    """params with a cosine schedule's length written out: schedule_kimg null means kimg, and the
    schedule's length shapes every step (progress = images shown / schedule images), while kimg alone
    only says how far to go."""
    cfg = params.train
    if cfg.schedule != "cosine" or cfg.schedule_kimg is not None:
        return params
    return params.model_copy(update={"train": cfg.model_copy(update={"schedule_kimg": cfg.kimg})})


def training_code(root: Path = _CODE_ROOT) -> CodeDigest:
    """The digest of the code that shapes a run's weights (ganlib/io/source.py), per file and overall."""
    return result_code_digest(TRAINING_CODE_ENTRIES, root)


def write_run_record(run_dir: Path, identity: RunIdentity, speed: dict[str, Any]) -> None:
    """run.json: the identity a run directory's checkpoints were made under, readable without loading them."""
    atomic_write_json(run_dir / RUN_RECORD_FILE, {
        "format": FORMAT, "fingerprint": identity.fingerprint, "compared": identity.compared,
        "code_files": identity.code_files, "speed": speed,
    })


def run_records(checkpoints_root: Path) -> list[RunRecord]:
    """Every run directory under `checkpoints_root` that holds a checkpoint, the most recently written first."""
    found = [record for run_dir in sorted(Path(checkpoints_root).glob("*")) if (record := read_run_record(run_dir))]
    return sorted(found, key=lambda record: record.newest.stat().st_mtime, reverse=True)


def read_run_record(run_dir: Path) -> RunRecord | None:
    """The run directory's RunRecord (from run.json, else from its newest checkpoint), or None without checkpoints."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return None
    try:
        saved = json.loads((run_dir / RUN_RECORD_FILE).read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        try:
            saved = load_checkpoint(checkpoints[-1])  # a run from before run.json: ask its checkpoint, once
        except CheckpointError:
            return None
        with contextlib.suppress(OSError):
            atomic_write_json(run_dir / RUN_RECORD_FILE, {
                "format": FORMAT, "fingerprint": saved.get("fingerprint"), "compared": saved.get("compared"),
                "code_files": saved.get("code_files") or {}, "speed": saved.get("speed") or {}})
    return RunRecord(run_dir, checkpoints[-1], dict(saved.get("compared") or {}),
                     dict(saved.get("code_files") or {}), dict(saved.get("speed") or {}))


def same_run_but_code(saved: dict[str, Any], identity: RunIdentity) -> bool:
    """Whether `saved` (a checkpoint's compared) is `identity` with other training code."""
    return {k: v for k, v in saved.items() if k != CODE_KEY} == \
        {k: v for k, v in identity.compared.items() if k != CODE_KEY}


def changed_code_files(saved_files: dict[str, str], identity: RunIdentity) -> list[str]:
    """The files whose code differs between a checkpoint's record and the running code."""
    return CodeDigest(identity.compared[CODE_KEY], identity.code_files).changed_files(saved_files)


def checkpoint_name(nimg: int) -> str:
    """ckpt-<images shown>.pt: zero-padded so names sort in training order."""
    return f"ckpt-{nimg:012d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """This run's checkpoints, oldest first (temporary files of interrupted writes are not listed)."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: Path, state: dict[str, Any], keep_last: int) -> Path:
    """Write `state` as ckpt-<nimg>.pt (temporary file, fsync, rename), then keep only the newest `keep_last`."""
    record = {"format": FORMAT, **state}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    path = atomic_write_bytes(run_dir / checkpoint_name(int(state["nimg"])), buffer.getvalue())
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # truncated, foreign, or holding pickled code
        raise CorruptCheckpointError(f"{path}: not a loadable checkpoint ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    return record


def set_aside_corrupt(path: Path) -> Path:
    """Rename an unreadable checkpoint to <name>.corrupt (kept for a post-mortem, out of every listing)."""
    aside = path.with_name(path.name + ".corrupt")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{n}")
    path.rename(aside)
    return aside


def check_compatible(record: dict[str, Any], identity: RunIdentity, path: Path, accept_code_change: bool = False) -> list[str]:
    """Refuse a checkpoint made with other params, data or training code, naming every differing key.

    With `accept_code_change`, a checkpoint that differs only in its training code is accepted;
    returns the files whose code changed (empty when the code is the same).
    """
    saved: dict[str, Any] = record["compared"]
    keys = sorted(set(saved) | set(identity.compared))
    missing = object()
    differing = [key for key in keys if saved.get(key, missing) != identity.compared.get(key, missing)]
    changed = changed_code_files(dict(record.get("code_files") or {}), identity) if CODE_KEY in differing else []
    if not differing or (accept_code_change and differing == [CODE_KEY]):
        return changed
    lines = [f"{key}: {_show(saved.get(key, missing))} -> {_show(identity.compared.get(key, missing))}"
             for key in differing]
    if changed:
        lines.append(f"training code changed in: {', '.join(changed)}")
    advice = "To train from scratch instead, set train.resume: fresh and do not pass a checkpoint " \
             "(existing checkpoints are kept)."
    if differing == [CODE_KEY]:
        advice = ("To continue it with the new code on purpose, set train.resume: accept_code_change "
                  "(both code digests are recorded in stats.jsonl and params.json). " + advice)
    raise CheckpointError(
        f"{path}: made with different parameters, data or training code, refusing to resume:\n  "
        + "\n  ".join(lines) + "\n" + advice
    )


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) as tensors and primitives."""
    np_state = np.random.get_state(legacy=False)
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


def _show(value: Any) -> str:
    return "(absent)" if not isinstance(value, (str, int, float, bool, list, type(None))) else json.dumps(value)
