"""Reference statistics: computed once, reused for the same data, never stale, never trusted when corrupt."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_metrics_support import TinyGenerator, TinyInfo, project, smooth_images, tiny_params, write_prepared_dataset

from ganlib.data.dataset import open_prepared
from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import compare_datasets, score_generator
from ganlib.metrics.extractors import build_extractor, resolve_extractor
from ganlib.metrics.reference import reference_cache_path, reference_key, reference_statistics

LOG = plain_logger("scenegan-tests")


def cache_files(root, params):
    return sorted((root / params.base.paths.fid_cache).glob("*.npz"))


def test_second_evaluation_reuses_the_statistics(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    first = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    second = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert (first.reference_stats_cached, second.reference_stats_cached) == (False, True)
    assert (first.fid, first.kid_mean) == (second.fid, second.kid_mean)
    assert len(cache_files(root, params)) == 1


def test_changed_dataset_content_never_reuses_stale_statistics(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    before = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)

    prepared = root / params.base.paths.prepared
    images = np.load(prepared / "images.npy")
    images[0, 0, 0] ^= 0xFF  # one pixel: same shape, count and resolution, new content
    write_prepared_dataset(prepared, images)
    after = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)

    assert after.reference_stats_cached is False
    assert after.dataset_sha256 != before.dataset_sha256
    assert after.fid != before.fid
    assert len(cache_files(root, params)) == 2


def test_reference_size_and_seed_are_part_of_the_key(tmp_path):
    root = project(tmp_path, n_real=48)
    all_images = score_generator(TinyGenerator(), TinyInfo(), tiny_params(), LOG, root)
    subset = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.n_reference=20"), LOG, root)
    assert (all_images.n_reference, subset.n_reference) == (48, 20)
    assert subset.reference_stats_cached is False
    other_seed = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.n_reference=20", "evaluate.seed=3"), LOG, root)
    assert other_seed.reference_stats_cached is False
    # n_reference beyond the dataset means "all": the same entry as 0.
    everything = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.n_reference=500"), LOG, root)
    assert everything.reference_stats_cached is True


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered"])
def test_corrupt_cache_file_is_recomputed(tmp_path, damage, caplog):
    root = project(tmp_path)
    params = tiny_params()
    first = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    (path,) = cache_files(root, params)
    if damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
    else:  # a valid archive whose features were changed: only the checksum can tell
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["features"] = arrays["features"] + 1.0
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    LOG.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger=LOG.name):
            second = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    finally:
        LOG.propagate = False
    assert second.reference_stats_cached is False
    assert second.fid == first.fid
    assert "recomputing" in caplog.text
    third = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert third.reference_stats_cached is True  # the rewritten file is valid again


def test_a_file_written_for_another_key_is_not_trusted(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    dataset = open_prepared(root / params.base.paths.prepared)
    spec = resolve_extractor(params.evaluate, root / params.base.paths.weights, root)
    key = reference_key(dataset, spec, 0, params.evaluate.seed)
    cache_dir = root / params.base.paths.fid_cache
    import torch

    make = lambda: build_extractor(spec, [spec.feature_layer], torch.device("cpu"))  # noqa: E731
    reference_statistics(dataset, spec, make, 20, 1, 8, torch.device("cpu"), cache_dir, LOG)
    (subset_file,) = cache_files(root, params)
    subset_file.rename(reference_cache_path(cache_dir, key))  # a subset's stats under the full set's name
    stats, cached = reference_statistics(dataset, spec, make, 0, params.evaluate.seed, 8, torch.device("cpu"), cache_dir, LOG)
    assert cached is False and stats.count == dataset.count


def test_real_vs_real_shares_the_cache_with_evaluation(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    other = write_prepared_dataset(tmp_path / "v2", smooth_images(48, seed=9), data_md5="fedcba9876543210")
    result = compare_datasets(root / params.base.paths.prepared, other, params, LOG, root)
    assert result.reference_stats_cached == (True, False)
    assert result.fid > 0 and result.data_md5_b == "fedcba9876543210"
    again = compare_datasets(root / params.base.paths.prepared, other, params, LOG, root)
    assert again.reference_stats_cached == (True, True) and again.fid == result.fid


def test_a_single_real_image_is_a_clear_error_not_nan(tmp_path):
    from ganlib.metrics.errors import EvaluationError

    root = project(tmp_path, n_real=5)
    with pytest.raises(EvaluationError, match="at least 2 real images.*evaluate.n_reference=1"):
        score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.n_reference=1"), LOG, root)
    assert not (root / tiny_params().base.paths.fid_cache).exists()


def _tiny_reference(root, params, spec=None):
    """(stats, cached, cache path) for the project's dataset through the tiny extractor."""
    import torch

    dataset = open_prepared(root / params.base.paths.prepared)
    spec = spec or resolve_extractor(params.evaluate, root / params.base.paths.weights, root)
    cache_dir = root / params.base.paths.fid_cache
    make = lambda: build_extractor(spec, [spec.feature_layer], torch.device("cpu"))  # noqa: E731
    stats, cached = reference_statistics(dataset, spec, make, 0, params.evaluate.seed, 16, torch.device("cpu"), cache_dir, LOG)
    return stats, cached, reference_cache_path(cache_dir, stats.key)


def test_new_extractor_weights_get_a_new_cache_entry(tmp_path, monkeypatch):
    import hashlib

    from ganlib.metrics import extractors, weight_files

    root = project(tmp_path)
    params = tiny_params("evaluate.extractor=fid-inception-v3-tf2015")
    dataset = open_prepared(root / params.base.paths.prepared)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    keys = []
    for release in (b"FID weights, release 1", b"FID weights, release 2"):
        # A new weights release: a new file, and the checksum the code pins it to.
        (weights_dir / weight_files.FID_INCEPTION_FILE).write_bytes(release)
        monkeypatch.setattr(weight_files, "FID_INCEPTION_SHA1", hashlib.sha1(release).hexdigest())
        monkeypatch.setattr(extractors, "FID_INCEPTION_SHA1", hashlib.sha1(release).hexdigest())
        keys.append(reference_key(dataset, resolve_extractor(params.evaluate, weights_dir, root), 0, params.evaluate.seed))
    assert keys[0] != keys[1]
    assert reference_cache_path(tmp_path, keys[0]) != reference_cache_path(tmp_path, keys[1])


def test_statistics_are_recomputed_when_the_weights_digest_changes(tmp_path):
    from dataclasses import replace

    root = project(tmp_path)
    params = tiny_params()
    spec = resolve_extractor(params.evaluate, root / params.base.paths.weights, root)
    _, cached_a, path_a = _tiny_reference(root, params, replace(spec, weights_digest="sha1:" + "a" * 40))
    _, cached_b, path_b = _tiny_reference(root, params, replace(spec, weights_digest="sha1:" + "b" * 40))
    _, cached_again, _ = _tiny_reference(root, params, replace(spec, weights_digest="sha1:" + "a" * 40))
    assert (cached_a, cached_b, cached_again) == (False, False, True)
    assert path_a != path_b


def test_changed_feature_code_gets_a_new_cache_entry_but_a_comment_does_not(tmp_path, monkeypatch):
    import shutil

    from ganlib.metrics import reference

    root = project(tmp_path)
    params = tiny_params()
    code = tmp_path / "code"
    shutil.copytree(REPO_ROOT / "ganlib", code / "ganlib", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(reference, "FEATURE_CODE_ROOT", code)
    _, first_cached, first_path = _tiny_reference(root, params)
    assert first_cached is False

    extractors_py = code / "ganlib" / "metrics" / "extractors.py"
    extractors_py.write_text("# a comment changes no number\n" + extractors_py.read_text())
    weights_py = code / "ganlib" / "metrics" / "weights.py"  # finding/installing weights: checksummed instead
    weights_py.write_text(weights_py.read_text() + "\nUNUSED_CONSTANT = 1\n")
    generator_py = code / "ganlib" / "models" / "dcgan.py"  # an architecture: not on the reference path
    generator_py.write_text(generator_py.read_text() + "\nUNUSED_CONSTANT = 1\n")
    _, cached, path = _tiny_reference(root, params)
    assert cached is True and path == first_path

    source = extractors_py.read_text()
    assert "x = (x - 128) / 128" in source
    extractors_py.write_text(source.replace("x = (x - 128) / 128", "x = (x - 127.5) / 127.5"))  # new input scaling
    _, cached, path = _tiny_reference(root, params)
    assert cached is False and path != first_path
