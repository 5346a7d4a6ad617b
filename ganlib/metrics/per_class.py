"""A class-conditional generator's evaluation: which class each sample is drawn as, and FID/KID per class.

    class_images(dataset, n_reference, seed)  each class's real rows, as the per-class reference statistics use them
    per_class_from_samples(...)               FID and KID per class from the overall samples and reference (default)
    per_class_scores(...)                     the same from per_class_samples fresh samples of each class

Which class each overall sample is drawn as (the data's class proportions, a
fixed allotment) is ganlib/metrics/sample_labels.py.

Per class, by default (evaluate.per_class_samples: null) with no extra pass
through the extractor: the overall samples drawn as that class (its share of
n_samples) against the overall reference's real images of that class (its
share of the n_reference images), whose features are already at hand. With
per_class_samples N, N latents (fixed_latents with evaluate.seed: the same
latents for every class, so classes differ only by their label) are drawn as
each class and compared with that class's real images alone, through
reference statistics cached per class (ganlib/metrics/reference.py: the key
holds the class's rows and labels hash): tighter numbers for small classes,
at the cost of N images per class through the extractor, and each class's
real images once per dataset version. A class with fewer real images than
evaluate.per_class_min_images gets no number, only the reason: FID on a
handful of images is mostly noise.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_features_to_statistics

from ganlib.config import EvaluateParams
from ganlib.data.dataset import PreparedDataset
from ganlib.logs import Logger
from ganlib.metrics.extractors import ExtractorSpec
from ganlib.metrics.features import generator_features
from ganlib.metrics.reference import ClassImages, ReferenceStats, reference_statistics
from ganlib.metrics.scores import fid_from_features, fid_uncertainty, kid_from_features
from ganlib.metrics.sources import SeededGenerator, eval_mode, reference_indices

def class_images(dataset: PreparedDataset, n_reference: int, seed: int) -> list[ClassImages]:
    """Each class's real rows, in the dataset's class order; at most n_reference of them (0: all), a seeded subset."""
    if dataset.labels is None:
        return []
    labels = np.asarray(dataset.labels)
    found = []
    for index, name in enumerate(dataset.class_names):
        rows = np.flatnonzero(labels == index).astype(np.int64)
        chosen = reference_indices(len(rows), n_reference, seed)    # the same rule as the whole dataset's subset
        found.append(ClassImages(name, rows if chosen is None else rows[chosen], dataset.labels_hash))
    return found


@dataclass(frozen=True)
class ClassScore:
    """One class's scores, or the reason it has none."""

    name: str
    n_real: int                       # real images of the class its reference statistics hold (or would)
    n_samples: int                    # samples generated as the class; 0 when it has no scores
    fid: float | None = None
    fid_low: float | None = None      # FID's sampling-noise band (evaluate.fid_bootstrap; None when off)
    fid_high: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    reason: str | None = None         # why there is no number ("night: 30 real images, fewer than ...")

    def metrics(self) -> dict[str, float | int]:
        """metrics.json's entry for the class: numbers only, a score not computed left out."""
        values = {"fid": self.fid, "fid_low": self.fid_low, "fid_high": self.fid_high, "kid": self.kid,
                  "kid_std": self.kid_std, "n_samples": self.n_samples, "n_real": self.n_real}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class PerClassResult:
    scores: tuple[ClassScore, ...]
    notes: tuple[str, ...]            # settings reduced on the way (KID subset size), in words
    how: str                          # what each class's numbers compare, in words (the report's table title)


def per_class_from_samples(
    fake_features: torch.Tensor,
    fake_labels: torch.Tensor,
    reference: ReferenceStats,
    reference_rows: np.ndarray | None,
    generator_classes: Sequence[str],
    dataset: PreparedDataset,
    settings: EvaluateParams,
    wanted: set[str],
) -> PerClassResult:
    """Each data class's scores from what the overall evaluation already has: the samples drawn as the class
    (`fake_labels`: the generator label of each overall sample) against the reference's real images of the class
    (`reference_rows`: the dataset rows the reference holds, None for all)."""
    own = {name: index for index, name in enumerate(generator_classes)}
    labels = np.asarray(dataset.labels)
    real_labels = labels if reference_rows is None else labels[reference_rows]
    scores: list[ClassScore] = []
    reduced: dict[str, int] = {}
    for index, name in enumerate(dataset.class_names):
        real_mask = real_labels == index
        n_real = int(real_mask.sum())
        unscorable = _unscorable(name, n_real, own, settings, " among the reference images (evaluate.n_reference)")
        fake = fake_features[(fake_labels == own[name]).to(fake_features.device)] if unscorable is None else None
        if unscorable is None and len(fake) < 2:
            unscorable = ClassScore(name, n_real, 0, reason=f"{name}: {len(fake)} of the {len(fake_labels)} samples "
                                    "are of this class; FID needs 2 (raise evaluate.n_samples)")
        if unscorable is not None:
            scores.append(unscorable)
            continue
        real = reference.features[torch.from_numpy(real_mask)]
        scores.append(_class_score(name, n_real, fake, real, fid_features_to_statistics(real), settings, wanted,
                                   reduced))
    return PerClassResult(tuple(scores), _reduced_notes(reduced, settings),
                          "the evaluation's samples drawn as each class, against that class's images among the "
                          f"reference's real images; seed {settings.seed}")


def per_class_scores(
    generator: nn.Module,
    z_dim: int,
    resolution: int,
    generator_classes: Sequence[str],
    dataset: PreparedDataset,
    spec: ExtractorSpec,
    make_extractor: Callable[[], FeatureExtractorBase],
    settings: EvaluateParams,
    wanted: set[str],
    cache_dir: Path,
    device: torch.device,
    log: Logger,
) -> PerClassResult:
    """FID (with its sampling-noise band) and KID of each data class's samples against that class's real images.

    Classes are the data's, in its order, matched to the generator's labels by name.
    """
    own = {name: index for index, name in enumerate(generator_classes)}
    scores: list[ClassScore] = []
    reduced: dict[str, int] = {}
    n = settings.per_class_samples
    for images in class_images(dataset, settings.n_reference, settings.seed):
        n_real = len(images.indices)
        unscorable = _unscorable(images.name, n_real, own, settings)
        if unscorable is not None:
            scores.append(unscorable)
            continue
        started = time.perf_counter()
        reference, _ = reference_statistics(dataset, spec, make_extractor, settings.n_reference, settings.seed,
                                            settings.batch_size, device, cache_dir, log, subset=images)
        label = own[images.name]
        with eval_mode(generator):
            model = SeededGenerator(generator, z_dim, resolution, functools.partial(_one_class, label))
            fake = generator_features(model, make_extractor(), n, settings.batch_size, settings.seed, device)
        scores.append(_class_score(images.name, n_real, fake[spec.feature_layer], reference.features,
                                   reference.fid_statistics, settings, wanted, reduced))
        log.info(f"class {images.name}: {n} samples against {n_real} real images in "
                 f"{time.perf_counter() - started:.1f} s")
    return PerClassResult(tuple(scores), _reduced_notes(reduced, settings),
                          f"{n} samples generated as each class, seed {settings.seed}, against that class's real "
                          "images only")


def _unscorable(
    name: str, n_real: int, own: dict[str, int], settings: EvaluateParams, where: str = "",
) -> ClassScore | None:
    """The class's reason for having no numbers, or None when it can be scored."""
    if name not in own:
        return ClassScore(name, n_real, 0, reason=f"{name}: the generator was not trained on this class (its "
                          "generator file does not list it)")
    if n_real < settings.per_class_min_images:
        return ClassScore(name, n_real, 0, reason=f"{name}: {n_real} real images{where}, fewer than "
                          f"evaluate.per_class_min_images ({settings.per_class_min_images})")
    return None


def _class_score(
    name: str, n_real: int, fake: torch.Tensor, real: torch.Tensor, real_statistics: dict[str, np.ndarray],
    settings: EvaluateParams, wanted: set[str], reduced: dict[str, int],
) -> ClassScore:
    """FID with its sampling-noise band and KID of one class's sample features against its real ones."""
    fid = fid_low = fid_high = kid = kid_std = None
    if "fid" in wanted:
        fid = fid_from_features(fake, real_statistics)
        band = fid_uncertainty(fake, real_statistics, settings.fid_bootstrap, False, settings.seed).band
        fid_low, fid_high = (None, None) if band is None else (band.low, band.high)
    if "kid" in wanted:
        score = kid_from_features(fake, real, settings.kid_subsets, settings.kid_subset_size, settings.seed)
        kid, kid_std = score.mean, score.std
        if score.note:
            reduced[name] = score.subset_size
    return ClassScore(name, n_real, len(fake), fid, fid_low, fid_high, kid, kid_std)


def _reduced_notes(reduced: dict[str, int], settings: EvaluateParams) -> tuple[str, ...]:
    if not reduced:
        return ()
    sizes = ", ".join(f"{name} {size}" for name, size in reduced.items())
    return (f"per-class KID subset size reduced from {settings.kid_subset_size} to the class's samples or real "
            f"images ({sizes}; evaluate.kid_subset_size): small subsets make KID noisier",)


def _one_class(label: int, n: int) -> torch.Tensor:
    return torch.full((n,), label, dtype=torch.long)


def per_class_unavailable_reason(
    generator_classes: Sequence[str], dataset: PreparedDataset, settings: EvaluateParams, wanted: set[str],
) -> str | None:
    """Why a conditional generator gets no per-class scores at all (None: it gets them, class by class)."""
    if dataset.labels is None or not dataset.class_names:
        return f"the prepared dataset at {dataset.root} has no class labels (preprocess.labels)"
    if settings.per_class_samples == 0:
        return "evaluate.per_class_samples is 0"
    if not wanted & {"fid", "kid"}:
        return "neither fid nor kid is in evaluate.metrics"
    if not set(generator_classes) & set(dataset.class_names):
        return (f"none of the data's classes ({', '.join(dataset.class_names)}) is one of the generator's "
                f"({', '.join(generator_classes)})")
    return None
