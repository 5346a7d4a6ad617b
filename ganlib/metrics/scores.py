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


# --------------------------------------------------------------------------- FID uncertainty
#
# The reported `fid` stays torch-fidelity's number. What follows recomputes
# FID many times on reweighted or smaller sets of the same generated features
# (bootstrap interval, FID-infinity), through an exact but much cheaper route
# than torch-fidelity's eigvals(sigma1 @ sigma2) on 2048 x 2048 matrices.

FID_CONFIDENCE = 0.95
FID_INFINITY_POINTS = 15        # Chong & Forsyth's number of sample counts
FID_INFINITY_SMALLEST = 0.2     # the smallest count, as a fraction of the generated samples


@dataclass(frozen=True)
class FidInterval:
    """A bootstrap interval for FID at this number of generated samples; see fid_bootstrap_interval."""

    low: float
    high: float
    bias: float          # mean bootstrap FID minus the full-sample FID (already taken out of low/high)
    resamples: int
    n: int
    confidence: float


@dataclass(frozen=True)
class FidInfinity:
    """Chong & Forsyth's FID-infinity: the intercept of a line fitted to FID against 1/N."""

    value: float
    slope: float                 # FID_N ~ value + slope / N
    sizes: tuple[int, ...]
    fids: tuple[float, ...]


@dataclass(frozen=True)
class FidUncertainty:
    interval: FidInterval | None
    infinity: FidInfinity | None
    notes: tuple[str, ...]


class FrechetTerms:
    """Generated features against fixed reference statistics, set up so that FID of any weighted subset is cheap.

    FID = |m - mu_r|^2 + tr S + tr S_r - 2 tr sqrt(S S_r). The last trace is the
    sum of the square roots of the eigenvalues of S S_r, which are those of the
    symmetric R S R (R = S_r^(1/2)); and since S = Y^T W Y / (N - 1) (Y: the
    subset's rows minus their weighted mean, W: the counts), its nonzero ones
    are also those of the u x u matrix W^(1/2) Y S_r Y^T W^(1/2) / (N - 1),
    u = rows with a nonzero count. So, with the reference fixed:

    - n <= d (1000 samples of 2048-d Inception features): G = Xc S_r Xc^T is
      computed once (n x n, Xc: the rows minus their overall mean, which keeps
      the per-subset re-centring free of cancellation); a subset then costs an
      eigvalsh of u x u (u ~ 0.63 n for a bootstrap resample). No matrix
      square root at all.
    - n > d: Z = Xc R is computed once (R from one eigh of S_r); a subset
      costs Z_u^T W Z_u (u d^2) and an eigvalsh of d x d.

    Counts replace materialised copies: a bootstrap resample is a vector of
    how often each row was drawn.
    """

    def __init__(self, features: torch.Tensor | np.ndarray, reference: dict[str, np.ndarray]):
        rows = features.numpy() if torch.is_tensor(features) else np.asarray(features)
        rows = rows.astype(np.float64)
        if rows.ndim != 2 or len(rows) < 2:
            raise ValueError(f"FID needs at least 2 feature rows, got an array of shape {rows.shape}")
        sigma_r = np.asarray(reference["sigma"], dtype=np.float64)
        self.n, self.d = rows.shape
        mean = rows.mean(axis=0)
        self._centred = rows - mean
        self._squared_norms = np.einsum("ij,ij->i", self._centred, self._centred)
        self._offset = mean - np.asarray(reference["mu"], dtype=np.float64)
        self._trace_reference = float(np.trace(sigma_r))
        if self.n <= self.d:
            self._gram = self._centred @ (sigma_r @ self._centred.T)
            self._projected = None
        else:
            values, vectors = np.linalg.eigh(sigma_r)
            root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
            self._projected = self._centred @ root
            self._gram = None

    def fid(self, counts: np.ndarray | None = None) -> float:
        """FID of the rows repeated `counts` times (None: each once) against the reference; not clamped."""
        counts = np.ones(self.n) if counts is None else np.asarray(counts)
        rows = np.flatnonzero(counts)
        weights = counts[rows].astype(np.float64)
        total = weights.sum()
        if total < 2:
            raise ValueError("FID needs a subset of at least 2 samples")
        shift = weights @ self._centred[rows] / total          # subset mean minus the overall mean
        mean_term = float(np.sum((self._offset + shift) ** 2))
        trace = (weights @ self._squared_norms[rows] - total * float(shift @ shift)) / (total - 1)
        root_trace = self._root_trace(rows, weights, total)
        return mean_term + trace + self._trace_reference - 2.0 * root_trace

    def _root_trace(self, rows: np.ndarray, weights: np.ndarray, total: float) -> float:
        """tr sqrt(S S_r) of the weighted subset: the sum of sqrt(eigenvalues), round-off negatives as 0."""
        if self._gram is not None:
            gram = self._gram[np.ix_(rows, rows)]
            towards_mean = gram @ weights / total                # y_i . mean, in the S_r inner product
            mean_norm = float(weights @ towards_mean) / total
            centred = gram - towards_mean[:, None] - towards_mean[None, :] + mean_norm
            root_w = np.sqrt(weights)
            matrix = root_w[:, None] * centred * root_w[None, :] / (total - 1)
        else:
            projected = self._projected[rows]
            mean = weights @ projected / total
            matrix = ((projected.T * weights) @ projected - total * np.outer(mean, mean)) / (total - 1)
        eigenvalues = np.linalg.eigvalsh(matrix)
        return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def fid_bootstrap_interval(
    terms: FrechetTerms, resamples: int, seed: int, confidence: float = FID_CONFIDENCE
) -> FidInterval:
    """A bootstrap interval for FID at n generated samples: the sampling noise of the finite generated set.

    Each resample draws n of the generated feature rows with replacement (as
    counts, seeded by `seed`) and recomputes FID against the same, fixed
    reference statistics. The interval says how far the FID of n samples
    moves when another n samples of the same generator are drawn; it holds
    the reference side fixed, so the noise of the finite real set (and the
    extractor, and anything systematic) is not in it. Two evaluations at the
    same n and reference whose intervals do not overlap differ by more than
    sampling noise.

    Percentile interval, shifted by the bootstrap's bias estimate: FID is
    biased upwards at finite n (about k/n, Chong & Forsyth 2020), and a
    bootstrap resample (~63% distinct rows) adds that bias once more, so with
    Inception features the plain percentiles lie wholly above the observed
    FID (measured on 1000 real-photo Inception features against another
    dataset's: FID 226.8, bias 6.5, plain 95% percentiles [228.6, 238.3]).
    Taking the mean shift out keeps the interval's width and shape (the
    noise) around the observed value: [222.1, 231.8]. `bias` records the
    shift; the plain percentiles are low + bias and high + bias.

    Cost: one eigvalsh of a ~0.63n x 0.63n matrix per resample when n <= d
    (see FrechetTerms).
    """
    # Measured on this project's 2-core CPU, 1000 x 2048 Inception features, 200 resamples:
    # setup 0.15 s, then ~20-30 ms a resample, 3.4-6 s in all (up to ~20 s while another
    # process holds the second core: OpenBLAS threads on small matrices). The d x d route
    # (eigvalsh of R S R, 2048^2) would be 0.6-0.9 s a resample, ~3 min; materialised copies
    # through torch-fidelity's eigvals 3-16 s each, 10-50 min. Agrees with torch-fidelity
    # to 1.6e-7 relative. n = 4000 > d takes the d x d route: ~0.65 s a resample.
    full = terms.fid()
    rng = np.random.default_rng(seed)
    values = np.array([terms.fid(np.bincount(rng.integers(0, terms.n, terms.n), minlength=terms.n))
                       for _ in range(resamples)])
    bias = float(values.mean() - full)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail]) - bias
    return FidInterval(max(0.0, float(low)), max(0.0, float(high)), bias, resamples, terms.n, confidence)


def fid_infinity(
    terms: FrechetTerms, seed: int, points: int = FID_INFINITY_POINTS, smallest: float = FID_INFINITY_SMALLEST
) -> FidInfinity | None:
    """FID-infinity (Chong & Forsyth 2020): FID of random subsets at `points` sizes from smallest*n to n,
    a least-squares line in 1/N, its value at 1/N = 0. None when n is too small for 3 distinct sizes >= 2.

    It removes the generated side's finite-sample bias only: the reference
    statistics are taken as they are (n_reference images, biased too). An
    extrapolation from subsets of one set of n samples, it is itself noisy:
    on 1000 x 2048 Inception features (FID 226.8) four subset seeds gave
    219.8-222.4. Cost there: 15 FIDs, 0.3-0.6 s in all on 2 CPU cores.
    """
    sizes = np.unique(np.linspace(smallest * terms.n, terms.n, points).astype(int))
    sizes = sizes[sizes >= 2]
    if len(sizes) < 3:
        return None
    rng = np.random.default_rng(seed)
    fids = []
    for size in sizes:
        counts = np.zeros(terms.n, dtype=np.int64)
        counts[rng.permutation(terms.n)[:size]] = 1             # a subset without replacement, as theirs
        fids.append(terms.fid(counts))
    slope, intercept = np.polyfit(1.0 / sizes, fids, 1)
    return FidInfinity(float(intercept), float(slope), tuple(int(s) for s in sizes), tuple(float(f) for f in fids))


def fid_uncertainty(
    features: torch.Tensor, reference: dict[str, np.ndarray], bootstrap: int, infinity: bool, seed: int
) -> FidUncertainty:
    """The bootstrap interval (bootstrap resamples; 0 = none) and FID-infinity (if `infinity`), set up once."""
    if bootstrap == 0 and not infinity:
        return FidUncertainty(None, None, ())
    terms = FrechetTerms(features, reference)
    interval = fid_bootstrap_interval(terms, bootstrap, seed) if bootstrap else None
    extrapolated = fid_infinity(terms, seed) if infinity else None
    notes = ()
    if infinity and extrapolated is None:
        notes = (f"FID-infinity unavailable: {terms.n} generated samples give fewer than 3 distinct subset sizes "
                 f"(evaluate.fid_infinity)",)
    return FidUncertainty(interval, extrapolated, notes)
