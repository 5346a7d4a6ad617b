"""A cheaper FID/KID measured while training runs, appended to a CSV curve for `dvc plots`.

The trainer builds one TrainingEvaluator and calls `maybe_measure` at each
tick; it measures at the first tick past every `evaluate.during_training.
every_kimg` (0 = never), with `during_training.n_samples` samples and the
same latents each time (evaluate.seed), so points on the curve differ only by
the generator. The reference statistics are the same cache entry the final
evaluation uses, loaded once.

Every row carries a short key of the settings that shape its numbers
(`curve_settings`: the extractor with its precision and weights, sample and
reference counts, seed, KID subsets, batch size). A resumed run whose curve
settings changed moves the old curve aside (superseded-curves/ in the run's
directory) and starts a new one, rather than mixing rows that are not
comparable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn

from ganlib.config import EvaluateParams, Params
from ganlib.data.dataset import open_prepared
from ganlib.io.atomic import atomic_write_text
from ganlib.logs import Logger
from ganlib.metrics.extractors import ExtractorSpec, build_extractor
from ganlib.metrics.features import generator_features
from ganlib.metrics.sample_labels import sample_labelling
from ganlib.metrics.reference import ReferenceStats, reference_statistics
from ganlib.metrics.scores import fid_from_features, kid_from_features
from ganlib.metrics.sources import SeededGenerator, eval_mode
from ganlib.metrics.speed import extractor_for_device

CURVE_FILE = "fid_curve.csv"
CURVE_COLUMNS = ("kimg", "fid", "kid_mean", "kid_std", "n_samples", "settings")
SUPERSEDED_DIR = "superseded-curves"


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
        self.settings_key = ""
        if self.every_kimg > 0:
            self.dataset = open_prepared(Path(root) / params.base.paths.prepared)
            self.spec = extractor_for_device(self.settings, Path(root) / params.base.paths.weights, Path(root), device, log)
            self.settings_key = settings_key(curve_settings(self.settings, self.spec))
        self._extractor = None
        self._reference: ReferenceStats | None = None
        # On resume, carry on from the last point already on the curve, if it was measured the same way.
        rows = read_curve(self.curve_path)
        if rows and any(row.get("settings") != self.settings_key for row in rows):
            aside = set_curve_aside(self.curve_path)
            log.info(f"FID curve: its settings changed since {aside.name} was written (now "
                     f"{json.dumps(curve_settings(self.settings, self.spec), sort_keys=True)}); "
                     f"starting a new curve, the old one is kept in {aside}")
            rows = []
        self._last_kimg = rows[-1]["kimg"] if rows else 0.0

    def due(self, kimg: float) -> bool:
        if self.every_kimg <= 0:
            return False
        return math.floor(kimg / self.every_kimg) > math.floor(self._last_kimg / self.every_kimg)

    def maybe_measure(
        self, generator: nn.Module, z_dim: int, kimg: float, classes: tuple[str, ...] = (),
    ) -> dict[str, float] | None:
        """measure() when a multiple of every_kimg was passed since the last point, else None."""
        return self.measure(generator, z_dim, kimg, classes) if self.due(kimg) else None

    def measure(self, generator: nn.Module, z_dim: int, kimg: float, classes: tuple[str, ...] = ()) -> dict[str, float]:
        """FID/KID of `generator` now; appends a row to the curve. Leaves the generator's mode and device as they were.

        A conditional generator (`classes`) draws its samples in the data's class proportions, as the evaluate
        stage does, so the curve's last point and the evaluation measure the same mixture."""
        started = time.perf_counter()
        extractor, reference = self._extractor_and_reference()
        labelling = sample_labelling(classes, self.dataset, self.settings.seed)
        with eval_mode(generator):
            model = SeededGenerator(generator, z_dim, self.dataset.resolution, labelling)
            fake = generator_features(model, extractor, self.n_samples, self.settings.batch_size, self.settings.seed, self.device)
        features = fake[self.spec.feature_layer]
        kid = kid_from_features(features, reference.features, self.settings.kid_subsets, self.settings.kid_subset_size, self.settings.seed)
        row = {
            "kimg": float(kimg),
            "fid": fid_from_features(features, reference.fid_statistics),
            "kid_mean": kid.mean,
            "kid_std": kid.std,
            "n_samples": self.n_samples,
            "settings": self.settings_key,
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


def curve_settings(settings: EvaluateParams, spec: ExtractorSpec) -> dict[str, object]:
    """Everything that shapes a point of the curve besides the generator."""
    during = settings.during_training
    return {
        "extractor": spec.identity(), "weights": spec.weights_digest, "feature_layer": spec.feature_layer,
        "n_samples": during.n_samples, "n_reference": settings.n_reference, "seed": settings.seed,
        "kid_subsets": settings.kid_subsets, "kid_subset_size": settings.kid_subset_size,
        "batch_size": settings.batch_size, "channels_last": spec.channels_last,
    }


def settings_key(settings: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def read_curve(path: Path) -> list[dict[str, float | str]]:
    """The curve's rows: numbers as floats, the settings key as text ("" in curves from before it)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [{key: (value or "") if key == "settings" else float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


def set_curve_aside(path: Path) -> Path:
    """Move a curve into superseded-curves/ beside it under a free name (kept, never deleted); the new path."""
    folder = Path(path).parent / SUPERSEDED_DIR
    folder.mkdir(exist_ok=True)
    n = 1
    while (aside := folder / f"{Path(path).stem}-{n}{Path(path).suffix}").exists():
        n += 1
    Path(path).rename(aside)
    return aside


def append_curve_row(path: Path, row: dict[str, float | str]) -> Path:
    """Rewrite the curve atomically with `row` last; rows at or after its kimg (from before a resume) are dropped."""
    rows = [r for r in read_curve(path) if r["kimg"] < row["kimg"]] + [row]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({key: _cell(key, r.get(key, "")) for key in CURVE_COLUMNS})
    return atomic_write_text(path, buffer.getvalue())


def _cell(column: str, value: float | str) -> str:
    if column == "settings":
        return str(value)
    return str(int(value)) if column == "n_samples" else repr(float(value))
