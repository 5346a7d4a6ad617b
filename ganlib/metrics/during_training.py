"""A cheaper FID/KID measured while training runs, appended to a CSV curve for `dvc plots`.

The trainer builds one TrainingEvaluator and calls `maybe_measure` at each
tick; it measures at the first tick past every `evaluate.during_training.
every_kimg` (0 = never), with `during_training.n_samples` samples and the
same latents each time (evaluate.seed), so points on the curve differ only by
the generator. The reference statistics are the same cache entry the final
evaluation uses, loaded once.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch
import torch.nn as nn

from ganlib.config import Params
from ganlib.data.dataset import open_prepared
from ganlib.io.atomic import atomic_write_text
from ganlib.logs import Logger
from ganlib.metrics.extractors import build_extractor
from ganlib.metrics.features import generator_features
from ganlib.metrics.reference import ReferenceStats, reference_statistics
from ganlib.metrics.scores import fid_from_features, kid_from_features
from ganlib.metrics.sources import SeededGenerator, eval_mode
from ganlib.metrics.speed import extractor_for_device

CURVE_FILE = "fid_curve.csv"
CURVE_COLUMNS = ("kimg", "fid", "kid_mean", "kid_std", "n_samples")


def curve_path(run_dir: Path) -> Path:
    """Where a run's curve is written: its working directory, published with the trainer's outputs."""
    return Path(run_dir) / CURVE_FILE


class TrainingEvaluator:
    """FID/KID of a generator at training ticks against cached reference statistics."""

    def __init__(self, params: Params, log: Logger, root: Path, curve_path: Path, device: torch.device):
        self.settings = params.evaluate
        self.every_kimg = self.settings.during_training.every_kimg
        self.n_samples = self.settings.during_training.n_samples
        self.log = log
        self.curve_path = Path(curve_path)
        self.device = device
        self.cache_dir = Path(root) / params.base.paths.fid_cache
        # When on, find missing weights or data now, not after the first hours of training;
        # when off, need neither.
        if self.every_kimg > 0:
            self.dataset = open_prepared(Path(root) / params.base.paths.prepared)
            self.spec = extractor_for_device(self.settings, Path(root) / params.base.paths.weights, Path(root), device, log)
        self._extractor = None
        self._reference: ReferenceStats | None = None
        # On resume, carry on from the last point already on the curve.
        rows = read_curve(self.curve_path)
        self._last_kimg = rows[-1]["kimg"] if rows else 0.0

    def due(self, kimg: float) -> bool:
        if self.every_kimg <= 0:
            return False
        return math.floor(kimg / self.every_kimg) > math.floor(self._last_kimg / self.every_kimg)

    def maybe_measure(self, generator: nn.Module, z_dim: int, kimg: float) -> dict[str, float] | None:
        """measure() when a multiple of every_kimg was passed since the last point, else None."""
        return self.measure(generator, z_dim, kimg) if self.due(kimg) else None

    def measure(self, generator: nn.Module, z_dim: int, kimg: float) -> dict[str, float]:
        """FID/KID of `generator` now; appends a row to the curve. Leaves the generator's mode and device as they were."""
        started = time.perf_counter()
        extractor, reference = self._extractor_and_reference()
        with eval_mode(generator):
            model = SeededGenerator(generator, z_dim, self.dataset.resolution)
            fake = generator_features(model, extractor, self.n_samples, self.settings.batch_size, self.settings.seed, self.device)
        features = fake[self.spec.feature_layer]
        kid = kid_from_features(features, reference.features, self.settings.kid_subsets, self.settings.kid_subset_size, self.settings.seed)
        row = {
            "kimg": float(kimg),
            "fid": fid_from_features(features, reference.fid_statistics),
            "kid_mean": kid.mean,
            "kid_std": kid.std,
            "n_samples": self.n_samples,
        }
        append_curve_row(self.curve_path, row)
        self._last_kimg = float(kimg)
        self.log.info(
            f"kimg {kimg:g}: FID {row['fid']:.3f}, KID {kid.mean:.5f} ({self.n_samples} samples, "
            f"{self.spec.name}, {time.perf_counter() - started:.1f} s)"
        )
        return row

    def _extractor_and_reference(self):
        if self._extractor is None:
            self._extractor = build_extractor(self.spec, [self.spec.feature_layer], self.device)
        if self._reference is None:
            self._reference, _ = reference_statistics(
                self.dataset, self.spec, lambda: self._extractor, self.settings.n_reference, self.settings.seed,
                self.settings.batch_size, self.device, self.cache_dir, self.log,
            )
        return self._extractor, self._reference


def read_curve(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def append_curve_row(path: Path, row: dict[str, float]) -> Path:
    """Rewrite the curve atomically with `row` last; rows at or after its kimg (from before a resume) are dropped."""
    rows = [r for r in read_curve(path) if r["kimg"] < row["kimg"]] + [row]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({key: (int(r[key]) if key == "n_samples" else repr(float(r[key]))) for key in CURVE_COLUMNS})
    return atomic_write_text(path, buffer.getvalue())
