"""The memorisation check (ganlib/metrics/memorisation.py): copies are flagged, fresh images score the baseline.

The "generators" here return given pictures: sample i (made from latent i of
fixed_latents(n, z_dim, evaluate.seed)) is picture i, so a test decides what a
generator "memorised".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_metrics_support import RESOLUTION, Z_DIM, TinyInfo, smooth_images, tiny_params, write_prepared_dataset

from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import measure_generator, score_generator, write_evaluation
from ganlib.metrics.memorisation import MEMORISATION_FORMAT, memorisation_in_space
from ganlib.metrics.neighbours import cross_neighbours, neighbours_within
from ganlib.metrics.report import render_table
from ganlib.metrics.sources import reference_indices
from ganlib.models.sampling import fixed_latents

LOG = plain_logger("scenegan-tests")
CPU = torch.device("cpu")


class PictureGenerator(nn.Module):
    """Latent i of fixed_latents(len(pictures), Z_DIM, seed) -> pictures[i] (uint8 NHWC), as [-1, 1] images."""

    def __init__(self, pictures: np.ndarray, seed: int):
        super().__init__()
        self.register_buffer("latents", fixed_latents(len(pictures), Z_DIM, seed))
        self.register_buffer("pictures", torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pictures[torch.cdist(z, self.latents).argmin(dim=1)]


def evaluated(tmp_path, pictures: np.ndarray, training: np.ndarray, *overrides: str):
    params = tiny_params("evaluate.metrics=[memorisation]", f"evaluate.n_samples={len(pictures)}", *overrides)
    write_prepared_dataset(tmp_path / params.base.paths.prepared, training)
    generator = PictureGenerator(pictures, params.evaluate.seed)
    return measure_generator(generator, TinyInfo(), params, LOG, tmp_path), params


def test_a_generator_that_returns_training_images_is_flagged_with_their_dataset_indices(tmp_path):
    training = smooth_images(60, seed=11)
    params = tiny_params("evaluate.n_reference=40")
    subset = reference_indices(60, 40, params.evaluate.seed)          # the reference rows are these dataset images
    copied = subset[np.random.RandomState(0).permutation(40)[:30]]    # sample i copies dataset image copied[i]
    evaluation, params = evaluated(tmp_path, training[copied], training, "evaluate.n_reference=40")

    report = evaluation.report
    assert report.memorisation == 1.0 and report.memorisation_pixels == 1.0
    assert report.memorisation_baseline == 0.05 and report.memorisation_n == 30
    check = evaluation.memorisation
    for space in (check.features, check.pixels):
        assert space.flagged == 30 and len(space.closest_pairs) == 16
        for pair in space.closest_pairs:
            # An index into the prepared dataset (images.npy), not into the 40-image reference subset.
            assert pair.training == copied[pair.sample]
            assert pair.distance < 1e-2
    assert check.pixels.closest_pairs[0].distance == pytest.approx(0.0, abs=1e-3)

    out = tmp_path / params.base.paths.evaluate
    write_evaluation(evaluation, params, out)
    record = json.loads((out / "memorisation.json").read_text())
    assert record["format"] == MEMORISATION_FORMAT and record["computed"] is True
    assert record["baseline"] == record["quantile"] == 0.05
    assert record["samples"] == {
        "n": 30, "seed": params.evaluate.seed, "z_dim": Z_DIM, "psi": 1.0,
        "latent": "ganlib.models.sampling.fixed_latents(n, z_dim, seed)[sample]",
    }
    assert record["training"]["n"] == 40 and record["training"]["dataset_images"] == 60
    assert record["training"]["subset_seed"] == params.evaluate.seed
    assert record["spaces"]["pixels"]["side"] == RESOLUTION                # 16 px images are not upsampled to 32
    pair = record["spaces"]["features"]["closest_pairs"][0]
    assert set(pair) == {"sample", "training", "distance"} and pair["training"] == copied[pair["sample"]]
    assert set(record["spaces"]["features"]["sample_nearest_quantiles"]) == {"p1", "p5", "p25", "p50", "p75", "p95"}

    table = render_table(report.report_rows())
    assert "memorisation           1 (baseline 0.05)" in table and "copies 1" in table


def test_a_generator_of_fresh_noise_is_not_flagged(tmp_path):
    noise = np.random.RandomState(3).randint(0, 256, size=(40, RESOLUTION, RESOLUTION, 3)).astype(np.uint8)
    evaluation, _ = evaluated(tmp_path, noise, smooth_images(48, seed=12))
    assert evaluation.report.memorisation == 0.0 and evaluation.report.memorisation_pixels == 0.0
    features = evaluation.memorisation.features
    # Noise sits farther from the training images than training images sit from each other.
    assert features.sample_nearest_quantiles["p50"] > features.training_leave_one_out_quantiles["p95"]


def test_held_out_real_images_score_about_the_baseline(tmp_path):
    # Fresh draws of the training distribution (another seed of the same generator of scenes). The figure's
    # noise comes mostly from the threshold (a quantile of N leave-one-out distances): at 400 against 400, five
    # seeds gave 0.22-0.30 in features and 0.24-0.30 in pixels.
    evaluation, _ = evaluated(
        tmp_path, smooth_images(400, seed=21), smooth_images(400, seed=22), "evaluate.memorisation_quantile=0.25"
    )
    assert evaluation.report.memorisation_baseline == 0.25
    assert evaluation.report.memorisation == pytest.approx(0.25, abs=0.1)
    assert evaluation.report.memorisation_pixels == pytest.approx(0.25, abs=0.1)


@pytest.mark.parametrize("quantile", [0.05, 0.2])
def test_fresh_samples_of_the_same_distribution_score_q_and_copies_score_one(quantile):
    generator = torch.Generator().manual_seed(5)
    training = torch.randn(2000, 8, generator=generator)
    fresh = torch.randn(2000, 8, generator=generator)
    copies = training[:500] + 1e-4 * torch.randn(500, 8, generator=generator)
    index = np.arange(2000) + 1000          # reference row r is dataset image r + 1000
    own = neighbours_within(training, 1, CPU).distances[:, 0]
    scores = {}
    for name, samples in (("fresh", fresh), ("copies", copies)):
        cross = cross_neighbours(samples, training, CPU)
        scores[name] = memorisation_in_space(
            "test", cross.nearest_reference_distance, cross.nearest_reference_index, own, index, quantile
        )
    assert scores["fresh"].memorisation == pytest.approx(quantile, abs=0.02)
    assert scores["copies"].memorisation == 1.0
    assert [p.training for p in scores["copies"].closest_pairs] == [p.sample + 1000 for p in scores["copies"].closest_pairs]


def test_memorisation_is_only_computed_when_asked_for_and_the_file_says_so(tmp_path):
    training = smooth_images(48, seed=13)
    params = tiny_params()     # evaluate.metrics=[fid,kid]
    write_prepared_dataset(tmp_path / params.base.paths.prepared, training)
    generator = PictureGenerator(training[:40], params.evaluate.seed)
    assert score_generator(generator, TinyInfo(), params, LOG, tmp_path).memorisation is None
    evaluation = measure_generator(generator, TinyInfo(), params, LOG, tmp_path)
    out = tmp_path / params.base.paths.evaluate
    metrics = json.loads(write_evaluation(evaluation, params, out).read_text())
    assert not {"memorisation", "memorisation_pixels", "memorisation_baseline", "memorisation_n"} & set(metrics)
    record = json.loads((out / "memorisation.json").read_text())
    assert record == {"format": MEMORISATION_FORMAT, "computed": False, "reason": "memorisation is not in evaluate.metrics"}
