"""Memorisation check: are generated samples closer to training images than training images are to each other?

    check_memorisation(...)        both spaces, from the features' neighbours and the downscaled pixels
    memorisation_in_space(...)     one space's figure, distance quantiles and closest pairs
    memorisation_record(...)       what memorisation.json holds (also when the check did not run)

A GAN that copies its training images can score a fine FID. The check looks
at each evaluated sample's nearest training image, in two spaces: the FID
extractor's features (what FID sees) and, as a second opinion, pixels
downscaled to at most 32 x 32 (pixels.py), where a copy is a copy whatever a
network thinks of it.

The figure, and why this one. For a space with distance d:

    s_i = min_j d(sample_i, train_j)                    each sample's nearest training image
    t_j = min_{j' != j} d(train_j, train_j')            each training image's nearest *other* one (leave-one-out)
    tau = the q-quantile of the t_j                     (q = evaluate.memorisation_quantile, 0.05)
    memorisation = #{i : s_i <= tau} / M                the fraction of samples "suspiciously close"

It asks: how many samples sit closer to a training image than all but a
fraction q of the training images sit to their nearest neighbour? A fresh
draw from the data distribution is, to the training images, just one more
image of that distribution: its nearest-training distance is distributed
like a training image's leave-one-out distance (over N rather than N - 1
others, a difference of ~1/N), so a generator of genuinely new images scores
about q: the BASELINE (memorisation_baseline = q in metrics.json). A
generator that reproduces training images scores about 1 (s_i = 0); one
whose samples are far from the data (noise, collapse to a blob) scores about
0. Between, the excess over q is the share of samples closer than natural:
0.05 means nothing unusual, 0.30 means a quarter of the samples are
near-copies. The figure needs no threshold picked by hand, reads the same in
both spaces and at any resolution, and it is a fraction a person can check by
looking at the closest pairs. Rejected: the mean or median nearest distance
(no scale: what is "small"?), the ratio of medians (a generator can be
closer than natural for half its samples and still pass), and a fixed pixel
threshold (depends on resolution and content).

What it compares against: the reference images (evaluate.n_reference, a
seeded subset of the prepared dataset; 0 = all of it), the same rows FID's
reference statistics use, so the Inception features come from the cache and
are never extracted twice. A sample copying a training image outside that
subset is measured like a fresh sample: with a subset holding a fraction f
of the training images, a pure copier scores about f + (1 - f) q. Set
evaluate.n_reference: 0 to check against every training image. Duplicate
training images (preprocess.near_duplicates: report) make some t_j near 0
and so lower tau: the check then flags only closer-than-duplicate samples.

memorisation.json (in base.paths.evaluate, beside metrics.json; a DVC out):

    {
      "format": "scenegan-memorisation/1",
      "computed": true,                 # false when memorisation is not in evaluate.metrics: then only
      "reason": null,                   #   format, computed and reason (why not) are present
      "definition": "...",              # the rule above, in one sentence
      "quantile": 0.05,                 # q
      "baseline": 0.05,                 # what a generator of fresh images scores; a copier scores 1
      "samples": {
        "n": 1000,                      # samples checked: 0..n-1
        "seed": 12345,                  # evaluate.seed
        "z_dim": 100,
        "psi": 1.0,                     # untruncated latents
        "latent": "ganlib.models.sampling.fixed_latents(n, z_dim, seed)[sample]"
      },
      "training": {
        "n": 1000,                      # training images compared against
        "dataset_images": 2000,         # images in the prepared dataset
        "subset_seed": 12345,           # null: all of them
        "data_md5": "...", "dataset_sha256": "...",
        "index": "row of images.npy in base.paths.prepared"
      },
      "spaces": {
        "features": {                   # always present when computed
          "description": "fid-inception-v3-tf2015 pool3 features (2048-d), Euclidean distance",
          "memorisation": 0.051,        # the figure above
          "threshold": 11.2,            # tau
          "flagged": 51,                # samples with s_i <= tau
          "sample_nearest_quantiles": {"p1": ..., "p5": ..., "p25": ..., "p50": ..., "p75": ..., "p95": ...},
          "training_leave_one_out_quantiles": {"p1": ..., ...},
          "closest_pairs": [            # the CLOSEST_PAIRS samples nearest to a training image, nearest first
            {"sample": 17, "training": 1203, "distance": 3.4},
            ...
          ]
        },
        "pixels": { ... the same keys; distance = RMS difference per pixel and channel in 0-255 levels
                    at "side" x "side" pixels ("side": 32) ... }
      }
    }

"sample" i is the evaluated sample made from latent i (regenerate it with
fixed_latents(n, z_dim, seed)[i] and to_uint8, as the gallery does);
"training" is an index into the prepared dataset (images.npy), never into the
reference subset. Several pairs may share a training image (several samples
copying one photo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganlib.metrics.neighbours import (
    CrossNeighbours,
    Neighbours,
    centre_of,
    cross_neighbours,
    neighbours_within,
    pair_distances,
)
from ganlib.metrics.report import MEMORISATION_FILE, MEMORISATION_FORMAT  # noqa: F401 (named for readers there)

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
CLOSEST_PAIRS = 16
DEFINITION = (
    "memorisation = the fraction of samples whose nearest training image is at most the q-quantile of the "
    "training images' own nearest-other-training-image distances (leave-one-out); a generator of fresh images "
    "scores about q (the baseline), one that copies training images about 1"
)


@dataclass(frozen=True)
class ClosestPair:
    sample: int        # the evaluated sample's index (its latent's row)
    training: int      # index into the prepared dataset
    distance: float


@dataclass(frozen=True)
class SpaceCheck:
    """The memorisation check in one space (features or pixels)."""

    description: str
    memorisation: float
    threshold: float
    flagged: int
    sample_nearest_quantiles: dict[str, float]
    training_leave_one_out_quantiles: dict[str, float]
    closest_pairs: tuple[ClosestPair, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "memorisation": self.memorisation,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "sample_nearest_quantiles": self.sample_nearest_quantiles,
            "training_leave_one_out_quantiles": self.training_leave_one_out_quantiles,
            "closest_pairs": [vars(pair) for pair in self.closest_pairs],
        }


@dataclass(frozen=True)
class CheckedImages:
    """Which samples and training images a check compared: enough to find every one of them again."""

    n_samples: int
    seed: int                   # evaluate.seed: sample i is made from fixed_latents(n_samples, z_dim, seed)[i]
    z_dim: int
    training_index: np.ndarray  # reference row -> index into the prepared dataset
    dataset_images: int
    subset_seed: int | None     # the reference subset's seed; None: every prepared image
    data_md5: str | None
    dataset_sha256: str


@dataclass(frozen=True)
class MemorisationCheck:
    """Both spaces' checks, with what a reader needs to find the samples and the training images again."""

    quantile: float
    features: SpaceCheck
    pixels: SpaceCheck
    pixel_side: int
    images: CheckedImages

    @property
    def baseline(self) -> float:
        """What a generator of fresh images scores (see the module docstring): q."""
        return self.quantile

    def summary(self) -> str:
        """One log line: both figures against the baseline, and the features' distance quantiles."""
        f, p = self.features, self.pixels
        sample_q, train_q = f.sample_nearest_quantiles, f.training_leave_one_out_quantiles
        return (
            f"memorisation: {f.memorisation:.3f} of {self.images.n_samples} samples (pixels: {p.memorisation:.3f}) "
            f"are closer to one of {len(self.images.training_index)} training images than {1 - self.quantile:.0%} of "
            f"those are to their nearest other one; fresh images score about {self.baseline:.3g}, copies 1. "
            f"Nearest-training distance p5/p50/p95: samples {sample_q['p5']:.4g}/{sample_q['p50']:.4g}/"
            f"{sample_q['p95']:.4g}, training images (leave-one-out) {train_q['p5']:.4g}/{train_q['p50']:.4g}/"
            f"{train_q['p95']:.4g}"
        )


def check_memorisation(
    generated_features: torch.Tensor,
    reference_features: torch.Tensor,
    feature_cross: CrossNeighbours,
    feature_reference: Neighbours,
    feature_description: str,
    generated_pixels: torch.Tensor,
    reference_pixels: torch.Tensor,
    pixel_side: int,
    images: CheckedImages,
    quantile: float,
    device: torch.device,
) -> MemorisationCheck:
    """Both spaces: which rows are nearest comes from the precision/recall pass for the features and is found
    here for the pixels; the distances of those nearest pairs are then computed exactly (pair_distances).

    `feature_cross` and `feature_reference` are the generated-vs-reference
    and reference-vs-itself neighbours of the extractor's features;
    `*_pixels` are uint8 rows (pixels.py) in the same order as those features.
    """
    if len(generated_pixels) != images.n_samples or len(reference_pixels) != len(images.training_index):
        raise ValueError(
            f"pixels of {len(generated_pixels)} samples and {len(reference_pixels)} training images for a check of "
            f"{images.n_samples} samples against {len(images.training_index)} training images"
        )
    features = _space_check(
        feature_description, generated_features, reference_features, feature_cross.nearest_reference_index,
        feature_reference.indices[:, 0], images.training_index, quantile, scale=1.0,
    )
    centre = centre_of(reference_pixels)
    pixel_nearest_other = neighbours_within(reference_pixels, 1, device, centre).indices[:, 0]
    pixel_nearest = cross_neighbours(generated_pixels, reference_pixels, device, centre=centre).nearest_reference_index
    pixels = _space_check(
        f"{pixel_side}x{pixel_side} box-averaged pixels, RMS difference per pixel and channel in 0-255 levels",
        generated_pixels, reference_pixels, pixel_nearest, pixel_nearest_other, images.training_index, quantile,
        # RMS difference per pixel and channel, in 0-255 levels: a Euclidean distance over sqrt(its length).
        scale=float(reference_pixels.shape[1]) ** -0.5,
    )
    return MemorisationCheck(quantile, features, pixels, pixel_side, images)


def _space_check(
    description: str, generated: torch.Tensor, reference: torch.Tensor, nearest: torch.Tensor,
    nearest_other: torch.Tensor, training_index: np.ndarray, quantile: float, scale: float,
) -> SpaceCheck:
    """memorisation_in_space from the nearest rows found, with their exact distances (times `scale`)."""
    return memorisation_in_space(
        description,
        pair_distances(generated, reference, nearest) * scale,
        nearest,
        pair_distances(reference, reference, nearest_other) * scale,
        training_index,
        quantile,
    )


def memorisation_in_space(
    description: str,
    sample_nearest: torch.Tensor,
    sample_nearest_row: torch.Tensor,
    training_leave_one_out: torch.Tensor,
    training_index: np.ndarray,
    quantile: float,
    pairs: int = CLOSEST_PAIRS,
) -> SpaceCheck:
    """The check in one space from each sample's nearest reference row (distance, row) and each reference row's
    nearest other one; `training_index[row]` is that reference row's index in the prepared dataset."""
    samples = sample_nearest.double().numpy()
    training = training_leave_one_out.double().numpy()
    threshold = float(np.quantile(training, quantile))
    flagged = int((samples <= threshold).sum())
    nearest_first = np.argsort(samples, kind="stable")[:pairs]
    rows = sample_nearest_row.numpy()
    return SpaceCheck(
        description=description,
        memorisation=flagged / len(samples),
        threshold=threshold,
        flagged=flagged,
        sample_nearest_quantiles=_quantiles(samples),
        training_leave_one_out_quantiles=_quantiles(training),
        closest_pairs=tuple(
            ClosestPair(int(i), int(training_index[rows[i]]), float(samples[i])) for i in nearest_first
        ),
    )


def memorisation_record(check: MemorisationCheck | None, reason: str | None = None) -> dict[str, Any]:
    """memorisation.json's content (format: the module docstring); `reason` says why there is no check."""
    if check is None:
        return {"format": MEMORISATION_FORMAT, "computed": False, "reason": reason or "not computed"}
    return {
        "format": MEMORISATION_FORMAT,
        "computed": True,
        "reason": None,
        "definition": DEFINITION,
        "quantile": check.quantile,
        "baseline": check.baseline,
        "samples": {
            "n": check.images.n_samples, "seed": check.images.seed, "z_dim": check.images.z_dim, "psi": 1.0,
            "latent": "ganlib.models.sampling.fixed_latents(n, z_dim, seed)[sample]",
        },
        "training": {
            "n": len(check.images.training_index), "dataset_images": check.images.dataset_images,
            "subset_seed": check.images.subset_seed, "data_md5": check.images.data_md5,
            "dataset_sha256": check.images.dataset_sha256, "index": "row of images.npy in base.paths.prepared",
        },
        "spaces": {
            "features": check.features.to_json(),
            "pixels": {**check.pixels.to_json(), "side": check.pixel_side},
        },
    }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))}
