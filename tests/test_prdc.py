"""Precision, recall, density, coverage (ganlib/metrics/prdc.py) and the tiled k-NN under them (neighbours.py)."""

from __future__ import annotations

import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from ganlib.metrics import neighbours
from ganlib.metrics.neighbours import cross_neighbours, neighbours_within
from ganlib.metrics.prdc import prdc_from_features

CPU = torch.device("cpu")


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    # Offset from the origin like Inception pool features, whose norms are large against their distances.
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * scale + 20.0 + shift


@pytest.mark.parametrize("k", [3, 5])
def test_precision_and_recall_match_torch_fidelity_on_the_same_features(k):
    real = gaussian(300, 32, seed=1)
    fake = gaussian(250, 32, seed=2, shift=0.15, scale=1.2)
    ours = prdc_from_features(fake, real, k, CPU)
    theirs = prc_features_to_metric(fake, real, prc_neighborhood=k, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    # Both values strictly inside (0, 1): the comparison says something. A distance at a ball's edge may round
    # the other way after our centring, so allow one sample of difference.
    assert 0.05 < ours.precision < 0.99 and 0.05 < ours.recall < 0.99
    assert ours.precision == pytest.approx(theirs["precision"], abs=1 / len(fake) + 1e-6)
    assert ours.recall == pytest.approx(theirs["recall"], abs=1 / len(real) + 1e-6)


def test_a_hand_computed_toy_case():
    # 1-D, k = 1. Real 0, 1, 2, 3: every real ball has radius 1. Generated 0.5 and 10: both balls radius 9.5.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    result = prdc_from_features(fake, real, 1, CPU)
    assert result.precision == 0.5      # 0.5 is inside the balls of 0 and 1; 10 in none
    assert result.recall == 1.0         # 0.5's ball (radius 9.5) holds every real point
    assert result.density == 1.0        # (2 balls holding 0.5 + 0 holding 10) / (k * 2 samples)
    assert result.coverage == 0.5       # 0 and 1 have a sample within 1; 2 and 3 (1.5, 2.5 away) do not
    assert result.note is None and result.k == 1


def test_identical_sets_are_covered_and_disjoint_far_sets_score_zero():
    real = gaussian(200, 16, seed=3)
    same = prdc_from_features(real.clone(), real, 5, CPU)
    assert same.precision == same.recall == same.coverage == 1.0
    assert same.density >= 1.0          # each sample sits at its own real twin's centre, plus its neighbours' balls

    far = prdc_from_features(gaussian(150, 16, seed=4, shift=100.0), real, 5, CPU)
    assert far.precision == far.recall == far.density == far.coverage == 0.0


def test_same_distribution_scores_about_one_with_naeem_k():
    # Naeem et al.: with k = 5, two samples of one distribution give density and coverage near 1 (and not above
    # 1 for coverage). Loose bounds: 400 points in 8-d.
    result = prdc_from_features(gaussian(400, 8, seed=5), gaussian(400, 8, seed=6), 5, CPU)
    assert 0.8 < result.density < 1.25 and 0.85 < result.coverage <= 1.0
    assert result.precision > 0.6 and result.recall > 0.6


def test_too_few_samples_for_k_is_a_note_not_a_number():
    result = prdc_from_features(gaussian(5, 4, seed=7), gaussian(50, 4, seed=8), 5, CPU)
    assert (result.precision, result.recall, result.density, result.coverage) == (None, None, None, None)
    assert "more than k = 5 samples" in result.note and "evaluate.prdc_k" in result.note


def test_tiles_smaller_than_the_sets_give_the_same_neighbours(monkeypatch):
    points = gaussian(70, 6, seed=9)
    points[10] = points[3]              # a duplicate: its nearest other row is at distance 0, not itself
    others = gaussian(45, 6, seed=10, shift=0.3)
    whole = neighbours_within(points, 4, CPU)
    whole_cross = cross_neighbours(others, points, CPU, whole.radii(4), neighbours_within(others, 4, CPU).radii(4))
    monkeypatch.setattr(neighbours, "TILE_ROWS", 8)
    monkeypatch.setattr(neighbours, "TILE_COLUMNS", 3)      # fewer columns than k: the running top-k merges tiles
    tiled = neighbours_within(points, 4, CPU)
    tiled_cross = cross_neighbours(others, points, CPU, tiled.radii(4), neighbours_within(others, 4, CPU).radii(4))

    # float32 distances through |a|^2 + |b|^2 - 2ab (cdist on large tiles) are good to ~1e-3 near 0.
    brute = torch.cdist(points.double(), points.double())
    brute.fill_diagonal_(float("inf"))
    expected, _ = brute.topk(4, dim=1, largest=False)
    assert torch.allclose(tiled.distances.double(), expected, atol=2e-3)
    assert torch.allclose(tiled.distances, whole.distances, atol=2e-3)
    assert (tiled.indices[:, 0] != torch.arange(70)).all()       # never its own neighbour
    assert tiled.indices[3, 0] == 10 and tiled.indices[10, 0] == 3 and tiled.distances[3, 0] < 2e-3
    for field in ("nearest_reference_distance", "nearest_generated_distance"):
        assert torch.allclose(getattr(tiled_cross, field), getattr(whole_cross, field), atol=2e-3)
    assert torch.equal(tiled_cross.nearest_reference_index, whole_cross.nearest_reference_index)
    assert torch.equal(tiled_cross.reference_balls_holding, whole_cross.reference_balls_holding)
    assert torch.equal(tiled_cross.in_generated_ball, whole_cross.in_generated_ball)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_path_gives_the_cpu_numbers_even_with_tf32_switched_on(monkeypatch):
    cuda = torch.device("cuda")
    real, fake = gaussian(3000, 256, seed=11), gaussian(2600, 256, seed=12, shift=0.05, scale=1.1)
    monkeypatch.setattr(neighbours, "TILE_ROWS", 1000)          # several tiles both ways
    monkeypatch.setattr(neighbours, "TILE_COLUMNS", 1200)
    on_cpu = prdc_from_features(fake, real, 5, CPU)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True                 # as training may leave it: must not leak in
    try:
        on_gpu = prdc_from_features(fake, real, 5, cuda)
        nearest = cross_neighbours(fake, real, cuda).nearest_reference_index
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    assert torch.backends.cuda.matmul.allow_tf32 == saved
    for name in ("precision", "recall", "coverage"):
        assert getattr(on_gpu, name) == pytest.approx(getattr(on_cpu, name), abs=3 / 2600), name
    assert on_gpu.density == pytest.approx(on_cpu.density, rel=1e-3)
    assert (nearest == cross_neighbours(fake, real, CPU).nearest_reference_index).float().mean() > 0.999


def test_a_metrics_json_from_before_prdc_still_reads_and_renders():
    from ganlib.metrics.report import EvaluationReport, render_table

    old = {  # evaluate.metrics: [fid, prc] under the old code: precision/recall with k = 3, no prdc_k
        "fid": 61.2, "kid_mean": None, "kid_std": None, "kid_subset_size": None, "is_mean": None, "is_std": None,
        "is_unavailable_reason": None, "precision": 0.61, "recall": 0.32, "n_samples": 1000, "n_reference": 1000,
        "batch_size": 50, "seed": 12345, "extractor": "fid-inception-v3-tf2015", "extractor_description": "x",
        "data_md5": "0123456789abcdef0123456789abcdef", "dataset_sha256": "ab" * 32, "checkpoint_kimg": 48.0,
        "resolution": 64, "device": "cpu", "notes": [], "fid_ci_low": 60.0, "fid_ci_high": 62.5,
    }
    report = EvaluationReport.from_json(old)
    assert (report.precision, report.density, report.prdc_k, report.memorisation) == (0.61, None, None, None)
    rows = {row["metric"]: row for row in report.report_rows()}
    assert rows["precision"]["value"] == "0.61" and "k-NN ball" in rows["precision"]["detail"]
    assert rows["density"]["value"] == rows["memorisation"]["value"] == "n/a"
    assert "memorisation (pixels)" not in rows and "coverage" in render_table(report.report_rows())
    written = report.to_json()
    assert not {"density", "coverage", "prdc_k", "memorisation"} & set(written) and written["fid_noise_low"] == 60.0
