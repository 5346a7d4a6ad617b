"""FID with uncertainty: the fast trace route, the sampling-noise band, FID-infinity, and where they show.

Statistical properties are checked with fixed seeds (so each test is
deterministic); nothing here measures time.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml
from conftest import REPO_ROOT
from test_metrics_support import TinyGenerator, TinyInfo, project, tiny_params  # noqa: F401

from ganlib.config import ParamsError, load_params
from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import measure_generator, score_generator, write_evaluation
from ganlib.metrics.report import EvaluationReport, read_evaluation, render_table
from ganlib.metrics.scores import (
    FrechetTerms,
    fid_noise_band,
    fid_from_features,
    fid_infinity,
    fid_uncertainty,
)
from ganlib.versions.compare import FID_HEADING, ROW_COLUMNS, Comparison, version_row
from ganlib.versions.revisions import Revision, VersionFacts

LOG = plain_logger("scenegan-tests")


def standard_fid(features: np.ndarray, reference: dict[str, np.ndarray]) -> float:
    """The textbook formula, with scipy's matrix square root."""
    mu, sigma = features.mean(axis=0), np.cov(features, rowvar=False)
    root = scipy.linalg.sqrtm(sigma @ reference["sigma"]).real
    diff = mu - reference["mu"]
    return float(diff @ diff + np.trace(sigma) + np.trace(reference["sigma"]) - 2.0 * np.trace(root))


def reference_of(features: np.ndarray) -> dict[str, np.ndarray]:
    return {"mu": features.mean(axis=0), "sigma": np.cov(features, rowvar=False)}


def correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Gaussian rows with a decaying spectrum and correlations, like pooled CNN features (but smaller)."""
    mixing = rng.normal(size=(d, d)) * (np.arange(1, d + 1) ** -0.7)[:, None]
    return rng.normal(size=(n, d)) @ mixing + shift


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return reference_of(correlated(np.random.default_rng(0), 600, 48))


# --------------------------------------------------------------------------- the fast FID


@pytest.mark.parametrize("n", [30, 200], ids=["n<d: gram route", "n>d: projected route"])
def test_fast_fid_equals_the_standard_formula(reference, n):
    d = len(reference["mu"])
    generated = correlated(np.random.default_rng(1), n, d, shift=0.3) * 1.2
    expected = standard_fid(generated, reference)
    assert FrechetTerms(torch.from_numpy(generated), reference).fid() == pytest.approx(expected, rel=1e-6)
    # and torch-fidelity's number, which the report's `fid` is
    assert fid_from_features(torch.from_numpy(generated), reference) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [30, 200], ids=["gram route", "projected route"])
def test_counts_give_the_fid_of_the_materialised_resample(reference, n):
    generated = correlated(np.random.default_rng(2), n, len(reference["mu"]), shift=-0.2)
    terms = FrechetTerms(generated, reference)
    rng = np.random.default_rng(3)
    for _ in range(3):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        copies = np.repeat(generated, counts, axis=0)
        assert terms.fid(counts) == pytest.approx(standard_fid(copies, reference), rel=1e-6)
    subset = np.zeros(n, dtype=int)
    subset[rng.permutation(n)[: n // 2]] = 1
    assert terms.fid(subset) == pytest.approx(standard_fid(generated[subset == 1], reference), rel=1e-6)


def test_fast_fid_of_the_reference_itself_is_about_zero():
    features = correlated(np.random.default_rng(4), 100, 16)
    assert abs(FrechetTerms(features, reference_of(features)).fid()) < 1e-8


# --------------------------------------------------------------------------- sampling-noise band


def true_model_reference(d: int) -> dict[str, np.ndarray]:
    """Exact (not estimated) statistics of N(0, I): reference-side noise is then zero by construction."""
    return {"mu": np.zeros(d), "sigma": np.eye(d)}


def test_the_noise_band_narrows_as_one_over_sqrt_n():
    """Coverage and width against fresh draws: tests/test_fid_noise_statistics.py."""
    d = 16
    reference = true_model_reference(d)
    widths = []
    for n in (100, 400, 1600):
        generated = np.random.default_rng(n).normal(0.25, 1.1, size=(n, d))
        band = fid_noise_band(FrechetTerms(generated, reference), 200, seed=7)
        assert (band.resamples, band.n, band.level) == (200, n, 0.95)
        assert band.bias > 0  # FID is biased upwards at finite n, resamples more so
        widths.append(band.high - band.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.5)  # ~1/sqrt(n)


def test_band_width_matches_the_spread_of_independent_draws():
    """What the band claims: how far FID at n moves when another n samples are drawn."""
    d, n = 16, 300
    reference = true_model_reference(d)
    rng = np.random.default_rng(11)
    draws = [FrechetTerms(rng.normal(0.25, 1.1, size=(n, d)), reference).fid() for _ in range(300)]
    spread = np.percentile(draws, 97.5) - np.percentile(draws, 2.5)
    band = fid_noise_band(FrechetTerms(rng.normal(0.25, 1.1, size=(n, d)), reference), 400, seed=1)
    assert band.high - band.low == pytest.approx(spread, rel=0.35)


def test_resamples_are_reproducible_with_the_seed(reference):
    terms = FrechetTerms(correlated(np.random.default_rng(5), 60, len(reference["mu"])), reference)
    first, again = fid_noise_band(terms, 50, seed=3), fid_noise_band(terms, 50, seed=3)
    assert first == again
    assert fid_noise_band(terms, 50, seed=4) != first


# --------------------------------------------------------------------------- FID-infinity


def test_fid_infinity_is_closer_to_the_true_fid_than_fid_at_the_smallest_n():
    """Generated ~ N(delta, I) against exact N(0, I) statistics: the true FID is |delta|^2."""
    d, n = 64, 1000
    delta = np.full(d, 0.15)
    true_fid = float(delta @ delta)
    generated = np.random.default_rng(8).normal(size=(n, d)) + delta
    terms = FrechetTerms(generated, true_model_reference(d))
    result = fid_infinity(terms, seed=2)
    assert len(result.sizes) == 15 and result.sizes[0] == n // 5 and result.sizes[-1] == n
    assert abs(result.value - true_fid) < abs(result.fids[0] - true_fid)
    assert abs(result.value - true_fid) < abs(terms.fid() - true_fid)
    assert result.slope > 0  # FID_N ~ FID_inf + k / N with k > 0
    assert fid_infinity(terms, seed=2) == result


def test_fid_infinity_needs_enough_samples():
    # 3 samples of 1-d features pass the 2-per-dimension guard, but subset sizes 0.6..3 leave only
    # 2 and 3 usable: too few points for a line worth trusting.
    features = np.random.default_rng(0).normal(size=(3, 1))
    assert fid_infinity(FrechetTerms(features, true_model_reference(1)), seed=0) is None
    uncertainty = fid_uncertainty(torch.from_numpy(features), true_model_reference(1), bootstrap=0, infinity=True, seed=0)
    assert uncertainty.band is None and uncertainty.infinity is None
    assert "fewer than 3 distinct subset sizes" in uncertainty.infinity_unavailable_reason


def test_nothing_asked_nothing_computed(reference):
    assert fid_uncertainty(torch.zeros(3, 48), reference, bootstrap=0, infinity=False, seed=0).band is None


# --------------------------------------------------------------------------- config


def write_params(tmp_path, **evaluate):
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    data["evaluate"].update(evaluate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_keys_are_validated(tmp_path):
    defaults = load_params(REPO_ROOT / "params.yaml").evaluate
    assert defaults.fid_bootstrap >= 20 and isinstance(defaults.fid_infinity, bool)
    assert load_params(write_params(tmp_path, fid_bootstrap=0, fid_infinity=False)).evaluate.fid_bootstrap == 0
    for bad, message in ((-1, "greater than or equal to 0"), (5, "at least 20 resamples")):
        with pytest.raises(ParamsError, match=rf"(?s)evaluate\.fid_bootstrap.*{message}"):
            load_params(write_params(tmp_path, fid_bootstrap=bad))
    with pytest.raises(ParamsError, match=r"evaluate\.fid_infinity"):
        load_params(write_params(tmp_path, fid_infinity="sometimes"))
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    data["evaluate"].pop("fid_infinity")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=r"evaluate\.fid_infinity: missing key"):
        load_params(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- metrics.json, report, compare


def test_evaluation_writes_and_shows_the_band_labelled_as_sampling_noise(tmp_path):
    root = project(tmp_path)
    params = tiny_params("evaluate.metrics=[fid]", "evaluate.fid_bootstrap=50", "evaluate.fid_infinity=true")
    evaluation = measure_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    report = evaluation.report
    metrics = json.loads(write_evaluation(evaluation, params, root / params.base.paths.evaluate).read_text())
    assert metrics["fid_noise_low"] < metrics["fid_noise_high"]
    assert metrics["fid_noise_resamples"] == 50 and metrics["fid_noise_n"] == 40
    assert isinstance(metrics["fid_noise_bias"], float)
    assert not {"fid_ci_low", "fid_ci_high"} & set(metrics)
    table = render_table(report.report_rows())
    assert f"[{metrics['fid_noise_low']:.6g}, {metrics['fid_noise_high']:.6g}]" in table
    assert "sampling noise: 95% band over 50 bootstrap resamples of the 40 generated samples; reference fixed" in table
    assert "not an interval on the true FID" in table

    # 40 samples of the tiny extractor's 64-d features: below 2 per dimension, no FID-infinity in metrics.json;
    # evaluation.json says why.
    provenance = json.loads((root / params.base.paths.evaluate / "evaluation.json").read_text())
    assert "fid_infinity" not in metrics
    assert "40 generated samples of 64-dimensional features" in provenance["fid_infinity_unavailable_reason"]
    [row] = [row for row in report.report_rows() if row["metric"] == "FID-infinity"]
    assert row["value"] == "n/a" and row["detail"].startswith("unavailable: FID-infinity not reported: 40")
    record = read_evaluation(root / params.base.paths.evaluate)
    assert record["fid_infinity"] is None and EvaluationReport.from_json(record).to_json() == record

    enough = score_generator(TinyGenerator(), TinyInfo(), tiny_params(
        "evaluate.metrics=[fid]", "evaluate.fid_bootstrap=0", "evaluate.fid_infinity=true", "evaluate.n_samples=128"),
        LOG, root)
    assert isinstance(enough.fid_infinity, float) and enough.fid_infinity_unavailable_reason is None

    off = score_generator(TinyGenerator(), TinyInfo(), tiny_params(
        "evaluate.metrics=[fid]", "evaluate.fid_bootstrap=0", "evaluate.fid_infinity=false"), LOG, root)
    assert off.fid == report.fid  # the headline FID does not depend on the uncertainty settings
    assert not {"fid_noise_low", "fid_noise_high", "fid_infinity", "fid_noise_resamples"} & set(off.to_json())
    assert "FID-infinity" not in render_table(off.report_rows())


def old_metrics() -> dict:
    """A metrics.json from before the uncertainty keys existed."""
    return dict(
        fid=41.5, kid_mean=0.01, kid_std=0.001, kid_subset_size=100, is_mean=None, is_std=None,
        is_unavailable_reason="no weights", precision=None, recall=None, n_samples=1000, n_reference=1000,
        batch_size=50, seed=1, extractor="fid-inception-v3-tf2015", extractor_description="FID Inception",
        data_md5="0123456789abcdef", dataset_sha256="ab" * 32, checkpoint_kimg=48.0, resolution=64,
        device="cpu", notes=[],
    )


def test_old_metrics_json_still_loads():
    report = EvaluationReport.from_json(old_metrics())
    assert report.fid_noise_low is None and report.fid_noise_high is None and report.fid_infinity is None
    assert report.to_json() == old_metrics()
    assert next(r for r in report.report_rows() if r["metric"] == "FID")["value"] == "41.5"


def facts(label: str, metrics: dict) -> VersionFacts:
    return VersionFacts(Revision(label, "tag", "f" * 40, 1_700_000_000), None, "0123456789abcdef", None, metrics)


def test_compare_shows_the_band_and_reads_old_files_as_blank():
    new = {**old_metrics(), "fid": 218.8123, "fid_noise_low": 214.1, "fid_noise_high": 223.9, "fid_infinity": 205.25,
           "fid_noise_resamples": 200, "fid_noise_n": 1000}
    rows = (version_row(facts("old", old_metrics())), version_row(facts("new", new)))
    assert (rows[0].fid_noise_low, rows[0].fid_noise_high, rows[0].fid_infinity) == (None, None, None)
    assert (rows[1].fid_noise_low, rows[1].fid_noise_high, rows[1].fid_infinity) == (214.1, 223.9, 205.25)
    comparison = Comparison(rows, (), ("fid",))
    assert {"fid_noise_low", "fid_noise_high", "fid_infinity"} <= set(ROW_COLUMNS)
    records = comparison.records()
    assert records[0]["fid_noise_low"] is None and records[1]["fid_noise_high"] == 223.9
    table = comparison.table_rows()
    assert table[0][FID_HEADING] == "41.5" and table[1][FID_HEADING] == "218.8 [214.1, 223.9]"
    assert table[0]["FID-inf"] == "" and table[1]["FID-inf"] == "205.2"
    markdown = comparison.to_markdown()
    assert "| 218.8 [214.1, 223.9] |" in markdown and f"| {FID_HEADING} |" in markdown
    assert ("FID's sampling noise, a 95% band over 200 bootstrap resamples of the 1000 generated samples, the "
            "reference statistics held fixed") in markdown
    assert "not a confidence interval on the true FID" in markdown
    assert "not a confidence interval" not in Comparison(rows[:1], (), ("fid",)).to_markdown()  # no band, no legend
    assert "FID-inf" not in Comparison(rows[:1], (), ("fid",)).table_rows()[0]  # a column only when some row has it


def test_metrics_written_before_the_rename_read_under_the_new_names():
    legacy = {**old_metrics(), "fid": 218.8, "fid_ci_low": 214.1, "fid_ci_high": 223.9, "fid_bootstrap_bias": 6.5,
              "fid_bootstrap_resamples": 200, "fid_bootstrap_n": 1000}
    report = EvaluationReport.from_json(legacy)
    assert (report.fid_noise_low, report.fid_noise_high, report.fid_noise_bias) == (214.1, 223.9, 6.5)
    assert (report.fid_noise_resamples, report.fid_noise_n) == (200, 1000)
    assert not {"fid_ci_low", "fid_ci_high"} & set(report.to_json())
    row = version_row(facts("legacy", legacy))
    assert (row.fid_noise_low, row.fid_noise_high, row.fid_noise_resamples, row.fid_noise_n) == (214.1, 223.9, 200, 1000)
