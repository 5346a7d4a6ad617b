"""The score files DVC reads as metrics (ganlib/metrics/dvc_scores.py): a file per metric, a few shared keys."""

from __future__ import annotations

from ganlib.metrics.dvc_scores import SCORE_KEYS, dvc_score_files

# metrics.json of a run with every metric (numbers as a tiny test project wrote them).
EVERY_METRIC = {
    "fid": 1.78322, "fid_noise_low": 1.77285, "fid_noise_high": 1.79344, "fid_noise_bias": 0.00128,
    "fid_noise_n": 32, "fid_noise_resamples": 200, "fid_infinity": 1.7, "fd_dinov2": 310.5,
    "kid_mean": 0.05525, "kid_std": 0.01366, "kid_subset_size": 16, "is_mean": 1.9, "is_std": 0.1,
    "precision": 1.0, "recall": 0.0, "density": 0.2125, "coverage": 0.04167, "prdc_k": 5,
    "memorisation": 0.0, "memorisation_pixels": 0.03125, "memorisation_baseline": 0.05, "memorisation_n": 32,
    "n_samples": 32, "n_reference": 48, "seed": 12345, "checkpoint_kimg": 0.256, "resolution": 32,
}


def test_one_file_per_metric_with_the_shared_keys_and_the_fid_band():
    files = dvc_score_files(EVERY_METRIC)
    assert list(files) == ["fid.json", "fid_infinity.json", "kid.json", "is.json", "fd_dinov2.json", "precision.json",
                           "recall.json", "density.json", "coverage.json", "memorisation.json"]
    for name, scores in files.items():
        assert set(scores) <= set(SCORE_KEYS) and scores["n"] == 32, (name, scores)
        assert all(value is None or type(value) in (int, float) for value in scores.values()), (name, scores)
        assert list(scores) == [key for key in SCORE_KEYS if key in scores]   # value first, as DVC shows them
    assert files["fid.json"] == {"value": 1.78322, "low": 1.77285, "high": 1.79344, "n": 32}
    assert files["kid.json"] == {"value": 0.05525, "std": 0.01366, "n": 32}
    assert files["density.json"] == {"value": 0.2125, "k": 5, "n": 32}
    assert files["memorisation.json"] == {"value": 0.0, "pixels": 0.03125, "baseline": 0.05, "n": 32}
    # `dvc metrics show` makes a column of each key of any file: a handful.
    assert len({key for scores in files.values() for key in scores}) <= 8


def test_a_metric_not_computed_has_no_file_and_a_missing_band_is_null():
    metrics = {key: value for key, value in EVERY_METRIC.items()
               if not key.startswith(("fid_noise", "fid_infinity", "fd_dinov2", "is_"))}
    files = dvc_score_files({**metrics, "prdc_k": "5"})   # a string (an older file's) is no number: null
    assert set(files) == {"fid.json", "kid.json", "precision.json", "recall.json", "density.json", "coverage.json",
                          "memorisation.json"}
    assert files["fid.json"] == {"value": 1.78322, "low": None, "high": None, "n": 32}
    assert files["precision.json"]["k"] is None
    assert dvc_score_files({"n_samples": 32}) == {}
