"""What FID's sampling-noise band and FID-infinity measure, checked on Gaussians whose FID is known exactly.

Generated features ~ N(delta, I) against the exact statistics of N(0, I):
the reference side has no noise, and the true (infinite-sample) FID is
|delta|^2. Everything runs from fixed seeds, so each test is deterministic;
the tolerances come from the number of trials, so a band or an
extrapolation that measured something else would fail them. Nothing here
measures time. The whole file takes about 10 s on one core.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.linalg

from ganlib.metrics.scores import (
    FID_INFINITY_SAMPLES_PER_DIMENSION,
    FrechetTerms,
    fid_infinity,
    fid_noise_band,
    fid_uncertainty,
)

D = 8               # feature dimension
N = 300             # generated samples per evaluation
SHIFT = 0.3         # delta = SHIFT in every coordinate: true FID = D * SHIFT^2 = 0.72


def exact_reference(d: int) -> dict[str, np.ndarray]:
    return {"mu": np.zeros(d), "sigma": np.eye(d)}


def evaluation(rng: np.random.Generator, n: int = N, d: int = D) -> FrechetTerms:
    """One evaluation: n fresh samples of the generator, against the fixed reference."""
    return FrechetTerms(rng.normal(size=(n, d)) + SHIFT, exact_reference(d))


def binomial_tolerance(level: float, trials: int, sigmas: float = 3.0) -> float:
    return sigmas * float(np.sqrt(level * (1.0 - level) / trials))


# --------------------------------------------------------------------------- the band's coverage


def test_the_noise_band_covers_the_mean_fid_at_n_at_its_nominal_level():
    """The quantity: E[FID_N], the mean FID over fresh N-sample draws of this generator against this reference.

    It is estimated from 4000 independent evaluations (its Monte Carlo error,
    ~0.0016, is 1/60 of one evaluation's spread). Then 600 further
    evaluations each compute their band (200 resamples); the fraction of
    bands that contain E[FID_N] must be 0.95 within 3 binomial standard
    errors of 600 trials (+-0.027). Measured: 0.960. The true FID, 0.72, is
    not what the band is about: E[FID_300] is 0.81 here, and the band
    contains 0.72 in only 86% of evaluations (checked below too).
    """
    rng = np.random.default_rng(2026)
    fresh = np.array([evaluation(rng).fid() for _ in range(4000)])
    mean_at_n = float(fresh.mean())
    true_fid = D * SHIFT**2
    assert mean_at_n - true_fid > 10 * fresh.std() / np.sqrt(len(fresh))  # FID_N's bias is real here

    trials = 600
    bands = [fid_noise_band(evaluation(rng), 200, seed=trial) for trial in range(trials)]
    low, high = np.array([b.low for b in bands]), np.array([b.high for b in bands])
    covers_mean = float(np.mean((low <= mean_at_n) & (mean_at_n <= high)))
    assert covers_mean == pytest.approx(0.95, abs=binomial_tolerance(0.95, trials))

    # Not a confidence interval on the true FID: it misses it far more often than 5% of the time.
    covers_truth = float(np.mean((low <= true_fid) & (true_fid <= high)))
    assert covers_truth < 0.95 - binomial_tolerance(0.95, trials)

    # Nor a prediction of the next evaluation: a fresh FID_N lands inside one evaluation's band less often
    # than 95% (two draws differ by sqrt(2) times one draw's spread: ~83% for a normal FID_N).
    inside = np.array([np.mean((fresh >= lo) & (fresh <= hi)) for lo, hi in zip(low, high)])
    assert inside.mean() < 0.95 - 3 * inside.std() / np.sqrt(trials)
    assert inside.mean() == pytest.approx(0.834, abs=0.05)


def test_the_band_width_is_the_spread_of_fid_over_fresh_draws():
    """Half the band's width, averaged over evaluations, against 1.96 sd of FID_N over fresh draws."""
    rng = np.random.default_rng(7)
    fresh = np.array([evaluation(rng).fid() for _ in range(2000)])
    bands = [fid_noise_band(evaluation(rng), 200, seed=seed) for seed in range(150)]
    widths = np.array([band.high - band.low for band in bands])
    expected = 2 * 1.96 * fresh.std()
    # 150 widths of ~15% relative spread each: their mean is known to ~1.5%; bootstrap widths are
    # themselves a little biased at n = 300, so 10%. Half or double the width fails by far.
    assert widths.mean() == pytest.approx(expected, rel=0.10)


# --------------------------------------------------------------------------- FID-infinity


def test_fid_infinity_at_many_samples_per_dimension_recovers_the_true_fid():
    """n = 400 = 50 d: averaged over 400 evaluations, FID-infinity is the true FID within 3 standard errors,
    while FID at n (bias ~0.07 = 13 standard errors) and a line in 1/sqrt(N) (~-0.14) are far off it."""
    rng = np.random.default_rng(5)
    true_fid = D * SHIFT**2
    results = [fid_infinity(evaluation(rng, n=400), seed=k) for k in range(400)]
    extrapolated = np.array([r.value for r in results])
    at_n = np.array([r.fids[-1] for r in results])
    standard_error = extrapolated.std() / np.sqrt(len(extrapolated))
    assert abs(extrapolated.mean() - true_fid) < 3 * standard_error
    assert at_n.mean() - true_fid > 5 * standard_error                  # the test could tell them apart
    assert abs(extrapolated.mean() - true_fid) < 0.3 * (at_n.mean() - true_fid)
    assert np.mean([r.slope for r in results]) > 0                       # FID_N ~ FID_inf + k / N, k > 0


@pytest.mark.parametrize("d", [8, 64])
def test_fid_infinity_is_reported_from_two_samples_per_dimension_and_not_below(d):
    enough = FID_INFINITY_SAMPLES_PER_DIMENSION * d
    rng = np.random.default_rng(d)
    assert fid_infinity(evaluation(rng, n=enough, d=d), seed=0) is not None

    too_few = rng.normal(size=(enough - 1, d)) + SHIFT
    assert fid_infinity(FrechetTerms(too_few, exact_reference(d)), seed=0) is None
    result = fid_uncertainty(too_few, exact_reference(d), bootstrap=0, infinity=True, seed=0)
    assert result.infinity is None and result.band is None
    reason = result.infinity_unavailable_reason
    assert f"{enough - 1} generated samples of {d}-dimensional features" in reason and f"at least {enough}" in reason


# --------------------------------------------------------------------------- memory at n = 50 000


def textbook_fid(rows: np.ndarray, reference: dict[str, np.ndarray]) -> float:
    mean, sigma = rows.mean(axis=0), np.cov(rows, rowvar=False)
    diff = mean - reference["mu"]
    root = scipy.linalg.sqrtm(sigma @ reference["sigma"]).real
    return float(diff @ diff + np.trace(sigma) + np.trace(reference["sigma"]) - 2.0 * np.trace(root))


def test_resampling_50000_rows_needs_no_copy_of_them_and_gives_the_materialised_fid():
    n, d = 50_000, 64
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(n, d)) * 1.1 + 0.05).astype(np.float32)
    reference = {"mu": np.zeros(d), "sigma": np.diag(np.linspace(0.5, 1.5, d))}
    counts = np.bincount(rng.integers(0, n, n), minlength=n)

    tracemalloc.start()
    try:
        terms = FrechetTerms(features, reference)
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        resampled = terms.fid(counts)
        fid_noise_band(terms, 3, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    one_float64_copy = n * d * 8              # 25.6 MB; a resample's distinct rows would be ~0.63 of it
    assert peak - before < one_float64_copy / 3
    assert peak - before < n * n * 8 / 1000   # and nowhere near an n x n matrix (20 GB)
    materialised = np.repeat(features.astype(np.float64), counts, axis=0)
    assert resampled == pytest.approx(textbook_fid(materialised, reference), rel=1e-9)
