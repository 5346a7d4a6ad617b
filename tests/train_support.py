"""Helpers for the training tests: tiny prepared datasets and tiny training params."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from conftest import load_test_params
from test_metrics_support import write_prepared_dataset

from ganlib.config import Params

# A training run small enough for a test: 32 px, a few thousand parameters, CPU, fp32.
TINY_TRAIN = (
    "base.device=cpu",
    "train.arch=dcgan",
    "train.z_dim=16",
    "train.g_width=8",
    "train.d_width=8",
    "train.batch_size=16",
    "train.microbatch=16",
    "train.kimg=0.32",
    "train.tick_kimg=0.064",
    "train.keep_last=3",
    "train.ema_halflife_kimg=0.05",
    "train.ema_rampup=0.05",
    "train.precision=fp32",
    "train.channels_last=false",
    "train.check_finite_every=1",
    "train.grid_size=4",
    "evaluate.during_training.every_kimg=0",  # no FID curve: it needs the Inception weights in the run's root
)


@pytest.fixture
def one_thread():
    """Tiny models are all overhead: a second intra-op thread only adds contention (and on a
    shared 2-core machine, spinning threads make a tiny step 5x slower). Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_params(*overrides: str) -> Params:
    return load_test_params([*TINY_TRAIN, *overrides])


def smooth_images(count: int, resolution: int, seed: int = 0) -> np.ndarray:
    """uint8 [N, R, R, 3] "scenes": a vertical sky-to-ground gradient with a random horizon and tint."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, resolution)[None, :, None, None]
    horizon = rng.uniform(0.3, 0.7, size=(count, 1, 1, 1))
    sky = rng.uniform([0.3, 0.5, 0.8], [0.6, 0.8, 1.0], size=(count, 1, 1, 3))
    ground = rng.uniform([0.1, 0.3, 0.0], [0.4, 0.6, 0.2], size=(count, 1, 1, 3))
    image = np.where(rows < horizon, sky * (0.7 + 0.3 * rows), ground)
    image = np.broadcast_to(image, (count, resolution, resolution, 3))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_prepared(root: Path, params: Params, images: np.ndarray) -> Path:
    """Write `images` as the prepared dataset of `params` under `root` (the format ganlib.data.dataset reads)."""
    return write_prepared_dataset(root / params.base.paths.prepared, images, data_md5=None)


def write_labels(prepared: Path, labels: np.ndarray, classes: Sequence[str]) -> None:
    """Class labels beside a prepared dataset, in the layout preprocess writes (labels.npy + manifest entries)."""
    import hashlib
    import json

    from ganlib.data.dataset import LABELS_FILE, MANIFEST_FILE

    np.save(prepared / LABELS_FILE, np.asarray(labels, dtype=np.int32))
    manifest = json.loads((prepared / MANIFEST_FILE).read_text())
    manifest["classes"] = list(classes)
    manifest["class_counts"] = {name: int((labels == i).sum()) for i, name in enumerate(classes)}
    manifest["labels_sha256"] = hashlib.sha256((prepared / LABELS_FILE).read_bytes()).hexdigest()
    (prepared / MANIFEST_FILE).write_text(json.dumps(manifest))


def checkpoint_tensors(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict, keys: Sequence[str] = ("G", "D", "G_ema")) -> None:
    """The named entries of two state records are identical, bit for bit, down to nested optimiser state."""
    for key in keys:
        _assert_identical(a[key], b[key], key)


def _assert_identical(a, b, where: str) -> None:
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for name in a:
            _assert_identical(a[name], b[name], f"{where}.{name}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
