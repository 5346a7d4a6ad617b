"""Features -> scores, with torch-fidelity's own formulas (so numbers match calculate_metrics').

Where the inputs are too few for the configured setting (KID subset size, IS
splits, the k of precision/recall), the setting is reduced or the score is
left out, and the returned note says so in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric


@dataclass(frozen=True)
class KidScore:
    mean: float
    std: float
    subset_size: int
    note: str | None


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float
    splits: int
    note: str | None


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float | None
    recall: float | None
    note: str | None


def fid_from_statistics(fake: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> float:
    """FID, clamped at 0: FID(x, x) comes out as about -3e-5 from the eigenvalue round-off."""
    return max(0.0, fid_statistics_to_metric(fake, real, verbose=False)[KEY_METRIC_FID])


def fid_from_features(fake: torch.Tensor, real_statistics: dict[str, np.ndarray]) -> float:
    return fid_from_statistics(fid_features_to_statistics(fake), real_statistics)


def kid_from_features(fake: torch.Tensor, real: torch.Tensor, subsets: int, subset_size: int, seed: int) -> KidScore:
    """KID (polynomial kernel, unbiased MMD^2 over random subsets), as torch-fidelity computes it."""
    usable = min(subset_size, len(fake), len(real))
    note = None
    if usable < subset_size:
        note = (
            f"KID subset size reduced from {subset_size} to {usable}: only {len(fake)} generated and "
            f"{len(real)} real samples (evaluate.kid_subset_size); small subsets make KID noisier"
        )
    metric = kid_features_to_metric(
        fake, real, kid_subsets=subsets, kid_subset_size=usable, rng_seed=seed, verbose=False
    )
    return KidScore(metric[KEY_METRIC_KID_MEAN], metric[KEY_METRIC_KID_STD], usable, note)


def inception_score_from_logits(logits: torch.Tensor, splits: int, seed: int) -> InceptionScore:
    usable = min(splits, len(logits))
    note = None
    if usable < splits:
        note = f"IS splits reduced from {splits} to {usable}: only {len(logits)} generated samples (evaluate.isc_splits)"
    metric = isc_features_to_metric(logits, splits=usable, shuffle=True, rng_seed=seed)
    return InceptionScore(metric[KEY_METRIC_ISC_MEAN], metric[KEY_METRIC_ISC_STD], usable, note)


def precision_recall_from_features(fake: torch.Tensor, real: torch.Tensor, neighborhood: int) -> PrecisionRecall:
    """Improved precision/recall (Kynkaanniemi et al. 2019) on the given features, k = neighborhood."""
    fewest = min(len(fake), len(real))
    if fewest <= neighborhood:
        return PrecisionRecall(
            None, None,
            f"precision/recall unavailable: the k-NN radius needs more than {neighborhood} samples per side "
            f"(evaluate.prc_neighborhood), got {len(fake)} generated and {len(real)} real",
        )
    metric = prc_features_to_metric(
        fake, real, prc_neighborhood=neighborhood, prc_batch_size=10000, save_cpu_ram=False, verbose=False
    )
    return PrecisionRecall(metric[KEY_METRIC_PRECISION], metric[KEY_METRIC_RECALL], None)
