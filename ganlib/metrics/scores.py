"""Features -> scores, with torch-fidelity's own formulas (so numbers match calculate_metrics').

Where the inputs are too few for the configured setting (KID subset size, IS
splits), the setting is reduced and the returned note says so in words.
Precision/recall/density/coverage: prdc.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric


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


# --------------------------------------------------------------------------- FID uncertainty
#
# The reported `fid` stays torch-fidelity's number. What follows recomputes
# FID many times on reweighted or smaller sets of the same generated features
# (the sampling-noise band, FID-infinity), through an exact but much cheaper
# route than torch-fidelity's eigvals(sigma1 @ sigma2) on 2048 x 2048 matrices.

FID_NOISE_LEVEL = 0.95
FID_INFINITY_POINTS = 15        # Chong & Forsyth's number of sample counts
FID_INFINITY_SMALLEST = 0.2     # the smallest count, as a fraction of the generated samples
# FID-infinity is reported only from this many generated samples per feature dimension: below it the
# sample covariance is rank-deficient over much of the fitted range and FID_N is not linear in 1/N
# (at 1000 samples of 2048-d Inception features the line misses by tens of points).
FID_INFINITY_SAMPLES_PER_DIMENSION = 2
# Feature rows are streamed through float64 blocks of at most this many numbers (2 MiB), so the
# memory a resample needs does not grow with n.
BLOCK_NUMBERS = 1 << 18


@dataclass(frozen=True)
class FidNoiseBand:
    """The sampling noise of FID at n generated samples, reference fixed; see fid_noise_band."""

    low: float
    high: float
    bias: float          # mean resampled FID minus the observed FID (not part of the band: see fid_noise_band)
    resamples: int
    n: int
    level: float


@dataclass(frozen=True)
class FidInfinity:
    """Chong & Forsyth's FID-infinity: the intercept of a line fitted to FID against 1/N."""

    value: float
    slope: float                 # FID_N ~ value + slope / N
    sizes: tuple[int, ...]
    fids: tuple[float, ...]


@dataclass(frozen=True)
class FidUncertainty:
    band: FidNoiseBand | None
    infinity: FidInfinity | None
    infinity_unavailable_reason: str | None = None   # asked for but not reported: why, in words


class FrechetTerms:
    """Generated features against fixed reference statistics, set up so that FID of any weighted subset is cheap.

    FID = |m - mu_r|^2 + tr S + tr S_r - 2 tr sqrt(S S_r). The last trace is the
    sum of the square roots of the eigenvalues of S S_r, which are those of the
    symmetric R S R (R = S_r^(1/2)); and since S = Y^T W Y / (N - 1) (Y: the
    subset's rows minus their weighted mean, W: the counts), its nonzero ones
    are also those of the u x u matrix W^(1/2) Y S_r Y^T W^(1/2) / (N - 1),
    u = rows with a nonzero count. So, with the reference fixed:

    - n <= d (1000 samples of 2048-d Inception features): G = Xc S_r Xc^T is
      computed once (n x n, at most d x d; Xc: the rows minus their overall
      mean, which keeps the per-subset re-centring free of cancellation); a
      subset then costs an eigvalsh of u x u (u ~ 0.63 n for a bootstrap
      resample). No matrix square root at all.
    - n > d: a subset's scatter Xc^T W Xc is summed block by block over the
      rows (BLOCK_NUMBERS at a time), then R S R and an eigvalsh of d x d.

    Weights replace copies: a resample is a vector of how often each row was
    drawn, and no resample copies the feature rows. Beyond the caller's
    features, memory is O(n + d^2 + a block): n-long weight vectors, a few
    d x d matrices (34 MB each at d = 2048) and one 2 MiB block (plus the
    n x n Gram matrix when n <= d, at most d x d). At n = 50 000, d = 2048,
    one float64 copy of the rows would be 820 MB, and a resample's distinct
    rows ~520 MB.
    """

    def __init__(self, features: torch.Tensor | np.ndarray, reference: dict[str, np.ndarray]):
        rows = features.detach().cpu().numpy() if torch.is_tensor(features) else np.asarray(features)
        if rows.ndim != 2 or len(rows) < 2:
            raise ValueError(f"FID needs at least 2 feature rows, got an array of shape {rows.shape}")
        sigma_r = np.asarray(reference["sigma"], dtype=np.float64)
        self.n, self.d = rows.shape
        self._rows = rows                                        # the caller's array, never copied whole
        self._block = max(1, BLOCK_NUMBERS // self.d)
        self._mean = sum(self._rows[s:s + self._block].astype(np.float64).sum(axis=0) for s in self._starts()) / self.n
        self._offset = self._mean - np.asarray(reference["mu"], dtype=np.float64)
        self._trace_reference = float(np.trace(sigma_r))
        if self.n <= self.d:
            centred = self._rows.astype(np.float64) - self._mean    # n x d with n <= d: at most d x d
            self._squared_norms = np.einsum("ij,ij->i", centred, centred)
            self._gram = centred @ (sigma_r @ centred.T)
            self._root_reference = None
        else:
            values, vectors = np.linalg.eigh(sigma_r)
            self._root_reference = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
            self._gram = None

    def fid(self, counts: np.ndarray | None = None) -> float:
        """FID of the rows repeated `counts` times (None: each once) against the reference; not clamped."""
        weights = np.ones(self.n) if counts is None else np.asarray(counts, dtype=np.float64)
        total = float(weights.sum())
        if total < 2:
            raise ValueError("FID needs a subset of at least 2 samples")
        if self._gram is not None:
            shift = self._weighted_sum(weights) / total             # subset mean minus the overall mean
            trace = (weights @ self._squared_norms - total * float(shift @ shift)) / (total - 1)
            root_trace = self._gram_root_trace(weights, total)
        else:
            shift, covariance = self._weighted_covariance(weights, total)
            trace = float(np.trace(covariance))
            root = self._root_reference
            root_trace = _sum_of_square_roots(np.linalg.eigvalsh(root @ covariance @ root))
        mean_term = float(np.sum((self._offset + shift) ** 2))
        return mean_term + trace + self._trace_reference - 2.0 * root_trace

    # The rows in float64 blocks, centred on the overall mean: what every sum below runs over.
    def _starts(self) -> range:
        return range(0, self.n, self._block)

    def _centred(self, start: int, keep: np.ndarray | None = None) -> np.ndarray:
        block = self._rows[start:start + self._block]
        centred = (block if keep is None else block[keep]).astype(np.float64)   # a block-sized copy
        centred -= self._mean
        return centred

    def _weighted_sum(self, weights: np.ndarray) -> np.ndarray:
        return sum(weights[s:s + self._block] @ self._centred(s) for s in self._starts())

    def _weighted_covariance(self, weights: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
        """(weighted mean - overall mean, weighted covariance), one pass over the rows with nonzero weight."""
        moment, scatter = np.zeros(self.d), np.zeros((self.d, self.d))
        for start in self._starts():
            keep = np.flatnonzero(weights[start:start + self._block])
            if len(keep) == 0:
                continue
            block, w = self._centred(start, keep), weights[start + keep]
            moment += w @ block
            scatter += (block.T * w) @ block
        shift = moment / total
        return shift, (scatter - total * np.outer(shift, shift)) / (total - 1)

    def _gram_root_trace(self, weights: np.ndarray, total: float) -> float:
        """tr sqrt(S S_r) from the Gram matrix, restricted to the rows with nonzero weight."""
        rows = np.flatnonzero(weights)
        w = weights[rows]
        gram = self._gram[np.ix_(rows, rows)]                   # u x u entries of G, not feature rows
        towards_mean = gram @ w / total                        # y_i . mean, in the S_r inner product
        mean_norm = float(w @ towards_mean) / total
        centred = gram - towards_mean[:, None] - towards_mean[None, :] + mean_norm
        root_w = np.sqrt(w)
        return _sum_of_square_roots(np.linalg.eigvalsh(root_w[:, None] * centred * root_w[None, :] / (total - 1)))


def _sum_of_square_roots(eigenvalues: np.ndarray) -> float:
    """sum sqrt(lambda), round-off negatives counted as 0."""
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def fid_noise_band(terms: FrechetTerms, resamples: int, seed: int, level: float = FID_NOISE_LEVEL) -> FidNoiseBand:
    """The sampling noise of FID at n generated samples, reference fixed: a bootstrap band around the observed FID.

    What it is: each resample draws n of the generated feature rows with
    replacement (as weights, seeded by `seed`) and recomputes FID against the
    same, fixed reference statistics. The spread of those FIDs estimates how
    far FID at this n moves when the n samples are drawn again from the same
    generator. What it covers: E[FID_n], the mean FID over fresh n-sample
    draws of this generator against this reference; with probability about
    `level`, that mean lies in the band of one evaluation
    (tests/test_fid_uncertainty.py measures it on Gaussians with known FID).
    What it is not: a confidence interval on the true (infinite-sample) FID.
    FID_n is biased upwards (about k/n, Chong & Forsyth 2020), and the band is
    about FID at this n; nor does it hold the reference set's own noise, the
    extractor's, or anything systematic. A fresh evaluation's FID lands inside
    one evaluation's band less often than `level` (about 83% at 95%: the
    difference of two draws has sqrt(2) times the spread of one).

    Construction, and the choice made: bootstrap percentiles with the
    resampling bias taken out, so the band sits around the observed FID.
    Resampled FIDs sit above the observed one by `bias` (a resample has ~63%
    distinct rows, which adds FID's small-n bias once more: on 1000
    Inception features, FID 226.8 with bias 6.5 and plain 95% percentiles
    [228.6, 238.3]), so plain percentiles would not even contain the observed
    value; their spread is what estimates the noise: band = percentiles -
    bias. Not a basic (reflected, 2F - percentiles) bootstrap band: that
    takes the bias out a second time and so aims at FID at infinitely many
    samples, which is not what this band is for, and which the bootstrap's
    bias estimate gets wrong when n is not much larger than d. On Gaussians
    (d = 8, n = 300) the band covers E[FID_n] in 95% of evaluations where the
    basic band covers it in 65-85%; reflecting the deviations (the textbook
    remedy for skew) measured no better. The numbers are those metrics.json
    held as fid_ci_low/fid_ci_high before the rename.

    Cost: one eigvalsh of a ~0.63n x 0.63n matrix per resample when n <= d,
    of d x d otherwise (see FrechetTerms).
    """
    # What this costs on a 2-core CPU, per route and sample count: BENCHMARKS.md, "FID sampling-noise band".
    observed = terms.fid()
    rng = np.random.default_rng(seed)
    values = np.array([terms.fid(np.bincount(rng.integers(0, terms.n, terms.n), minlength=terms.n))
                       for _ in range(resamples)])
    bias = float(values.mean() - observed)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail]) - bias
    return FidNoiseBand(max(0.0, float(low)), max(0.0, float(high)), bias, resamples, terms.n, level)


def fid_infinity_unavailable_reason(n: int, d: int) -> str | None:
    """Why FID-infinity is not reported for n generated samples of d-dimensional features (None: it is)."""
    needed = FID_INFINITY_SAMPLES_PER_DIMENSION * d
    if n >= needed:
        return None
    return (f"FID-infinity not reported: {n} generated samples of {d}-dimensional features; extrapolating FID "
            f"to infinitely many samples needs at least {needed} ({FID_INFINITY_SAMPLES_PER_DIMENSION} per "
            f"dimension), below that the line in 1/N is biased by far more than FID's noise "
            f"(raise evaluate.n_samples, or set evaluate.fid_infinity: false)")


def fid_infinity(
    terms: FrechetTerms, seed: int, points: int = FID_INFINITY_POINTS, smallest: float = FID_INFINITY_SMALLEST
) -> FidInfinity | None:
    """FID-infinity (Chong & Forsyth 2020): FID of random subsets at `points` sizes from smallest*n to n,
    a least-squares line in 1/N, its value at 1/N = 0. None when n < 2 d (fid_infinity_unavailable_reason)
    or too few distinct sizes for a line.

    It removes the generated side's finite-sample bias only: the reference
    statistics are taken as they are (n_reference images, biased too). An
    extrapolation from subsets of one set of n samples, it is itself noisy.
    FID_N is linear in 1/N only once N is well above d; with fewer samples than
    dimensions the covariance is rank-deficient and the line misses by tens of
    points (1000 x 2048 Inception features), hence the guard.
    """
    if fid_infinity_unavailable_reason(terms.n, terms.d):
        return None
    sizes = np.unique(np.linspace(smallest * terms.n, terms.n, points).astype(int))
    sizes = sizes[sizes >= 2]
    if len(sizes) < 3:
        return None
    rng = np.random.default_rng(seed)
    fids = []
    for size in sizes:
        counts = np.zeros(terms.n)
        counts[rng.permutation(terms.n)[:size]] = 1             # a subset without replacement, as theirs
        fids.append(terms.fid(counts))
    slope, intercept = np.polyfit(1.0 / sizes, fids, 1)
    return FidInfinity(float(intercept), float(slope), tuple(int(s) for s in sizes), tuple(float(f) for f in fids))


def fid_uncertainty(
    features: torch.Tensor, reference: dict[str, np.ndarray], bootstrap: int, infinity: bool, seed: int
) -> FidUncertainty:
    """The sampling-noise band (`bootstrap` resamples; 0 = none) and FID-infinity (if `infinity`), set up once."""
    if bootstrap == 0 and not infinity:
        return FidUncertainty(None, None)
    terms = FrechetTerms(features, reference)
    band = fid_noise_band(terms, bootstrap, seed) if bootstrap else None
    extrapolated = fid_infinity(terms, seed) if infinity else None
    reason = None
    if infinity and extrapolated is None:
        reason = (fid_infinity_unavailable_reason(terms.n, terms.d)
                  or f"FID-infinity not reported: {terms.n} generated samples give fewer than 3 distinct subset "
                     f"sizes (evaluate.fid_infinity)")
    return FidUncertainty(band, extrapolated, reason)
