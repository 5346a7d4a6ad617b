"""Training checkpoints: full state, written atomically, checked before reuse.

A checkpoint holds everything that determines the rest of a run (networks,
optimisers, gradient scalers, counters, the data sampler, every RNG), as
tensors and primitives only, so it loads with torch.load(weights_only=True).

Runs are identified by a fingerprint of the parameters that change what is
computed, the dataset's content hash and a digest of the training code (the
import closure of the modules training runs, ganlib/io/source.py):
checkpoints live in `<checkpoints>/<fingerprint>/`, so a rerun after an
interruption finds its own checkpoints, while a params, data or code change
starts a new directory without touching the old one. Without the code, an
edited model or GAN step would resume the finished checkpoint, train nothing
and publish the old generator. Comments, docstrings and formatting are not
part of the code digest, so rewording a comment does not restart a run. Keys
that only change how long or how fast we train (kimg, tick length, compile,
...) are left out of the fingerprint, which is what lets a larger `kimg`
continue the last checkpoint.
"""

from __future__ import annotations

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

from ganlib.config import Params, params_fingerprint
from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_bytes
from ganlib.io.source import import_closure, source_digest

FORMAT = "scenegan-checkpoint/1"

# Keys that do not change what training computes (length, upkeep, speed
# knobs, where files go). nproc is here because a run's math depends on
# microbatch, not on how many processes share the microbatches. The node
# layout keys (nnodes, rdzv_*, node_rank) are here for the same reason: the
# ranks compute the same step on one machine or several, and which machine a
# rank runs on changes nothing (tests/test_multinode.py), so a run keeps its
# checkpoints when it moves between one machine and a cluster. They still
# have to add up: nnodes * nproc * microbatch divides batch_size (config.py).
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

# What training runs: the in-process trainer with its FID-curve hook (tasks/train.py)
# and the torchrun entry point. Their import closure is the code a run is keyed by.
TRAINING_ENTRY_MODULES = ("ganlib.training.loop", "ganlib.training.fid_curve", "ganlib.training.__main__")
# The project root of the code that is running (ganlib/training/checkpoint.py -> root).
_CODE_ROOT = Path(__file__).resolve().parents[2]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint is unreadable, of another format, or belongs to another run."""


@dataclass(frozen=True)
class RunIdentity:
    fingerprint: str            # directory name under base.paths.checkpoints
    compared: dict[str, Any]    # dotted key -> value: what a checkpoint must match to be resumed


def run_identity(params: Params, dataset_sha256: str, code_digest: str | None = None) -> RunIdentity:
    """The run's checkpoint directory name and what a checkpoint must match to be resumed.

    `code_digest` defaults to training_code_digest() of the code that is running.
    """
    code_digest = code_digest if code_digest is not None else training_code_digest()
    excluded = non_computational_keys(params)
    params_hash = params_fingerprint(params, "base", "train", exclude=excluded)
    fingerprint = hashlib.sha256(f"{params_hash}:{dataset_sha256}:{code_digest}".encode()).hexdigest()[:16]
    compared = _flatten(params.section_dict("base", "train"))
    for key in excluded:
        compared = {k: v for k, v in compared.items() if k != key and not k.startswith(key + ".")}
    compared["dataset.sha256"] = dataset_sha256
    compared["code.digest"] = code_digest
    return RunIdentity(fingerprint=fingerprint, compared=compared)


def non_computational_keys(params: Params) -> tuple[str, ...]:
    """NON_COMPUTATIONAL_KEYS, less train.kimg under a cosine schedule: there the run's length
    shapes every step (progress = images shown / all images), so a longer run is another run."""
    if params.train.schedule == "cosine":
        return tuple(key for key in NON_COMPUTATIONAL_KEYS if key != "train.kimg")
    return NON_COMPUTATIONAL_KEYS


def training_code_digest(root: Path = _CODE_ROOT) -> str:
    """source_digest of every project file training runs (comments and docstrings do not count)."""
    return source_digest(import_closure(TRAINING_ENTRY_MODULES, root), root)


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
        raise CheckpointError(f"{path}: not a loadable checkpoint ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    return record


def check_compatible(record: dict[str, Any], identity: RunIdentity, path: Path) -> None:
    """Refuse a checkpoint made with other params, data or training code, naming every differing key."""
    saved: dict[str, Any] = record["compared"]
    keys = sorted(set(saved) | set(identity.compared))
    missing = object()
    differences = [
        f"{key}: {_show(saved.get(key, missing))} -> {_show(identity.compared.get(key, missing))}"
        for key in keys
        if saved.get(key, missing) != identity.compared.get(key, missing)
    ]
    if differences:
        raise CheckpointError(
            f"{path}: made with different parameters, data or training code, refusing to resume:\n  "
            + "\n  ".join(differences)
            + "\nTo train from scratch instead, set train.resume: fresh and do not pass a checkpoint "
            "(existing checkpoints are kept)."
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


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _show(value: Any) -> str:
    return "(absent)" if not isinstance(value, (str, int, float, bool, list, type(None))) else json.dumps(value)
