"""Numerical properties of the metrics, on a tiny registered extractor (the real Inception: test_metrics_inception.py)."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch
from file_audit import file_access
from test_metrics_support import (
    TinyGenerator,
    TinyInfo,
    add_noise,
    empty_torch_hub,  # noqa: F401 (fixture)
    no_network,  # noqa: F401 (fixture)
    project,
    smooth_images,
    tiny_params,
    write_prepared_dataset,
)
from torch_fidelity import calculate_metrics

from ganlib.logs import plain_logger
from ganlib.metrics.errors import EvaluationError
from ganlib.metrics.evaluate import compare_datasets, score_generator
from ganlib.metrics.extractors import TINY_RANDOM_CONV, build_extractor, register_extractors, resolve_extractor
from ganlib.metrics.features import generator_features
from ganlib.metrics.sources import PreparedImages, SeededGenerator
from ganlib.metrics.weight_files import WeightsError

LOG = plain_logger("scenegan-tests")


def test_fid_of_a_dataset_with_itself_is_zero(tmp_path, no_network):
    images = smooth_images(40, seed=3)
    a = write_prepared_dataset(tmp_path / "a", images)
    # Shuffled, so its content hash differs and its features are computed anew.
    b = write_prepared_dataset(tmp_path / "b", images[np.random.RandomState(0).permutation(40)])
    result = compare_datasets(a, b, tiny_params(), LOG, tmp_path)
    assert result.reference_stats_cached == (False, False)
    assert 0.0 <= result.fid < 1e-6


def test_fid_and_kid_grow_as_noise_is_added(tmp_path):
    clean = smooth_images(40, seed=3)
    base = write_prepared_dataset(tmp_path / "clean", clean)
    # Subsets as large as the sets: KID is then a deterministic function of the features.
    params = tiny_params("evaluate.kid_subset_size=40")
    results = []
    for sigma in (4, 16, 48):
        noisy = write_prepared_dataset(tmp_path / f"noisy{sigma}", add_noise(clean, sigma))
        results.append(compare_datasets(base, noisy, params, LOG, tmp_path))
    fids = [r.fid for r in results]
    kids = [r.kid_mean for r in results]
    assert 0 < fids[0] < fids[1] < fids[2], fids
    assert kids[0] < kids[1] < kids[2], kids


def test_scores_do_not_depend_on_batch_size(tmp_path):
    root = project(tmp_path)
    small = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.batch_size=3"), LOG, root)
    large = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.batch_size=40"), LOG, root)
    assert small.fid == pytest.approx(large.fid, rel=1e-5)
    assert small.kid_mean == pytest.approx(large.kid_mean, rel=1e-4, abs=1e-7)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    root = project(tmp_path)
    params = tiny_params("evaluate.n_reference=40")
    first = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    again = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    other = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.n_reference=40", "evaluate.seed=7"), LOG, root)
    assert (first.fid, first.kid_mean, first.kid_std) == (again.fid, again.kid_mean, again.kid_std)
    assert first.fid != other.fid
    assert (first.seed, other.seed) == (12345, 7)


def test_values_match_torch_fidelity_calculate_metrics(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    ours = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)

    register_extractors()
    from ganlib.data.dataset import open_prepared

    dataset = open_prepared(root / params.base.paths.prepared)
    theirs = calculate_metrics(
        input1=SeededGenerator(TinyGenerator(), TinyInfo.z_dim, TinyInfo.resolution),
        input1_model_num_samples=params.evaluate.n_samples,
        input2=PreparedImages(dataset.images),
        feature_extractor=TINY_RANDOM_CONV,
        fid=True, kid=True,
        kid_subsets=params.evaluate.kid_subsets, kid_subset_size=params.evaluate.kid_subset_size,
        batch_size=params.evaluate.batch_size, rng_seed=params.evaluate.seed,
        cuda=False, cache=False, verbose=False, save_cpu_ram=True,
    )
    assert ours.fid == pytest.approx(max(0.0, theirs["frechet_inception_distance"]), rel=1e-9)
    assert ours.kid_mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.kid_std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_kid_subset_size_shrinks_to_the_sample_count_with_a_message(tmp_path, caplog):
    root = project(tmp_path, n_real=48)
    params = tiny_params("evaluate.n_samples=12", "evaluate.kid_subset_size=1000")
    with caplog.at_level("WARNING", logger=LOG.name):
        LOG.propagate = True
        try:
            report = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
        finally:
            LOG.propagate = False
    assert report.kid_subset_size == 12
    assert math.isfinite(report.kid_mean)
    message = "KID subset size reduced from 1000 to 12"
    assert any(message in note for note in report.notes)
    assert message in caplog.text


def test_precision_recall_density_coverage_on_our_features(tmp_path):
    images = smooth_images(30, seed=5)
    root = tmp_path
    params = tiny_params("evaluate.metrics=[fid,prdc]", "evaluate.n_samples=30")
    write_prepared_dataset(root / params.base.paths.prepared, images)
    report = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert 0.0 <= report.precision <= 1.0 and 0.0 <= report.recall <= 1.0
    assert 0.0 <= report.coverage <= 1.0 and report.density >= 0.0 and report.prdc_k == 5
    assert report.kid_mean is None  # not asked for

    too_few = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[prdc]", "evaluate.n_samples=3"), LOG, root)
    assert too_few.precision is None and too_few.density is None
    assert any("precision/recall/density/coverage unavailable" in n and "evaluate.prdc_k" in n for n in too_few.notes)


def test_inception_score_is_unavailable_without_weights_and_nothing_is_downloaded(tmp_path, no_network, empty_torch_hub):
    root = project(tmp_path)
    report = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[fid,is]"), LOG, root)
    assert report.is_mean is None and report.is_std is None
    assert "weights-inception-2015-12-05-6726825d.pth" in report.is_unavailable_reason
    assert str(empty_torch_hub) in report.is_unavailable_reason
    assert report.fid is not None
    assert report.to_json()["is_unavailable_reason"] == report.is_unavailable_reason


def test_configured_is_weights_that_are_missing_or_corrupt_are_named(tmp_path, no_network):
    root = project(tmp_path)
    missing = score_generator(
        TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[is]", "evaluate.inception_weights=nowhere/w.pth"), LOG, root
    )
    assert "evaluate.inception_weights" in missing.is_unavailable_reason and "nowhere/w.pth" in missing.is_unavailable_reason

    (root / "w.pth").write_bytes(b"not the weights")
    corrupt = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[is]", "evaluate.inception_weights=w.pth"), LOG, root)
    assert "replace the file" in corrupt.is_unavailable_reason


def test_missing_extractor_weights_are_a_clear_error_not_a_download(tmp_path, no_network, empty_torch_hub):
    root = project(tmp_path)
    with pytest.raises(WeightsError, match="make weights"):
        score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.extractor=fid-inception-v3-tf2015"), LOG, root)
    with pytest.raises(WeightsError, match="inception-v3-compat"):
        score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.extractor=inception-v3-compat"), LOG, root)


def test_generator_is_left_as_it_was(tmp_path):
    root = project(tmp_path)
    generator = TinyGenerator().train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    score_generator(generator, TinyInfo(), tiny_params(), LOG, root)
    assert generator.training
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())


def test_bad_generators_are_refused_with_a_reason(tmp_path):
    root = project(tmp_path)
    with pytest.raises(EvaluationError, match="32px images but the prepared dataset"):
        score_generator(TinyGenerator(resolution=32), TinyInfo(resolution=32), tiny_params(), LOG, root)

    class Diverged(TinyGenerator):
        def forward(self, z):
            return super().forward(z) * float("nan")

    with pytest.raises(EvaluationError, match="NaN"):
        score_generator(Diverged(), TinyInfo(), tiny_params(), LOG, root)


def test_comparing_datasets_of_different_resolution_is_an_error(tmp_path):
    a = write_prepared_dataset(tmp_path / "a", smooth_images(8, seed=1, resolution=16))
    b = write_prepared_dataset(tmp_path / "b", smooth_images(8, seed=1, resolution=32))
    with pytest.raises(EvaluationError, match="16px but .* is 32px"):
        compare_datasets(a, b, tiny_params(), LOG, tmp_path)


def test_generated_images_are_uint8_and_never_touch_the_disk(tmp_path, monkeypatch):
    # Where a stray cache or temporary file would land, an empty directory to inspect afterwards.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for variable in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(variable, str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(scratch)
    params = tiny_params()
    spec = resolve_extractor(params.evaluate, tmp_path / "weights", tmp_path)
    extractor = build_extractor(spec, [spec.feature_layer], torch.device("cpu"))
    model = SeededGenerator(TinyGenerator(), TinyInfo.z_dim, TinyInfo.resolution)
    generator_features(model, extractor, 6, 4, 0, torch.device("cpu"))  # first use: imports, lazy set-up

    with file_access() as accesses:
        images = model(torch.from_numpy(np.random.RandomState(0).randn(5, TinyInfo.z_dim)).float())
        features = generator_features(model, extractor, 6, 4, 0, torch.device("cpu"))
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    assert features[spec.feature_layer].shape[0] == 6
    # Only Python's own bytecode cache may be written (by an import on first use).
    assert [a for a in accesses if a.writes and not a.path.endswith(".pyc")] == []
    assert list(scratch.iterdir()) == []

    with file_access() as control:  # the tripwire sees a write in such a block
        np.save(scratch / "leak.npy", images.numpy())
    assert [a.path for a in control if a.writes] == [str(scratch / "leak.npy")]


def test_inception_score_of_known_class_distributions():
    from ganlib.metrics.scores import inception_score_from_logits

    undecided = inception_score_from_logits(torch.zeros(40, 1008), splits=4, seed=0)
    assert undecided.mean == pytest.approx(1.0)  # every image the same flat distribution: IS = 1
    confident = torch.full((40, 1008), -30.0)
    confident[torch.arange(40), torch.arange(40) % 10] = 30.0  # sure of one of 10 classes, all 10 equally often
    score = inception_score_from_logits(confident, splits=1, seed=0)
    assert score.mean == pytest.approx(10.0, rel=1e-6)
    few = inception_score_from_logits(confident[:3], splits=10, seed=0)
    assert few.splits == 3 and "IS splits reduced from 10 to 3" in few.note
