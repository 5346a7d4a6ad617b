"""The nearest-neighbour scores of one evaluation: precision/recall/density/coverage and the memorisation check.

    knn_scores(features, truncated, reference, ...)   prdc for the main samples and each truncation psi,
                                                      memorisation for the main samples

The reference features' own k nearest neighbours are found once and shared
by every generated set scored against them; the main samples' pass against
the reference serves both precision/recall and memorisation (prdc.py's
compare_with_reference), so nothing is computed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ganlib.config import EvaluateParams
from ganlib.data.dataset import PreparedDataset
from ganlib.metrics.memorisation import CheckedImages, MemorisationCheck, check_memorisation
from ganlib.metrics.pixels import reference_pixels
from ganlib.metrics.prdc import Prdc, ReferenceSide, compare_with_reference, prdc_unavailable_reason, reference_side
from ganlib.metrics.reference import ReferenceStats
from ganlib.metrics.sources import reference_indices


@dataclass(frozen=True)
class GeneratedPixels:
    """The main samples' downscaled pixels (pixels.PixelKeepingGenerator), for the memorisation check."""

    rows: torch.Tensor   # uint8 [n_samples, 3 * side * side]
    side: int
    z_dim: int


@dataclass(frozen=True)
class KnnScores:
    prdc: Prdc | None                          # the main samples'; None when prdc is not in evaluate.metrics
    memorisation: MemorisationCheck | None     # None when memorisation is not in evaluate.metrics
    truncated: dict[float, Prdc | None]        # psi -> that psi's samples' prdc


def knn_scores(
    features: torch.Tensor,
    truncated: dict[float, torch.Tensor],
    reference: ReferenceStats,
    pixels: GeneratedPixels | None,
    dataset: PreparedDataset,
    feature_description: str,
    settings: EvaluateParams,
    wanted: set[str],
    device: torch.device,
) -> KnnScores:
    """prdc (if wanted) of `features` and of each psi's features; memorisation (if wanted and `pixels`) of `features`."""
    k = settings.prdc_k if "prdc" in wanted else None
    if k is None and "memorisation" not in wanted:
        return KnnScores(None, None, {psi: None for psi in truncated})
    side = _reference_side(reference, settings.n_samples, k, device)
    prdc, cross = compare_with_reference(features, side, k, device)
    memorisation = None
    if "memorisation" in wanted and pixels is not None:
        # The reference features' rows are these prepared images, in this order (reference.py makes them so).
        subset = reference_indices(dataset.count, settings.n_reference, settings.seed)
        images = CheckedImages(
            n_samples=len(features), seed=settings.seed, z_dim=pixels.z_dim,
            training_index=np.arange(dataset.count) if subset is None else subset, dataset_images=dataset.count,
            subset_seed=None if subset is None else settings.seed, data_md5=dataset.data_md5,
            dataset_sha256=dataset.content_hash,
        )
        memorisation = check_memorisation(
            features, side.rows, cross, side.neighbours, feature_description, pixels.rows,
            reference_pixels(dataset.images, subset, pixels.side), pixels.side, images,
            settings.memorisation_quantile, device,
        )
    truncated_prdc = {psi: compare_with_reference(rows, side, k, device)[0] if k else None
                      for psi, rows in truncated.items()}
    return KnnScores(prdc, memorisation, truncated_prdc)


def _reference_side(reference: ReferenceStats, n_samples: int, k: int | None, device: torch.device) -> ReferenceSide:
    """The reference's own k nearest neighbours: k of them when prdc can run, else 1 (all memorisation needs)."""
    usable = k is not None and prdc_unavailable_reason(n_samples, reference.count, k) is None
    return reference_side(reference.features, k if usable else 1, device)
