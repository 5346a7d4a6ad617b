"""The real FID Inception on a handful of images (about 7 images/s on 2 CPU cores, so: few)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, load_test_params
from test_metrics_support import no_network, smooth_images, write_prepared_dataset  # noqa: F401
from torch_fidelity import calculate_metrics

from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import compare_datasets
from ganlib.metrics.extractors import (
    FID_INCEPTION,
    POOL_FEATURES,
    TORCH_FIDELITY_INCEPTION,
    build_extractor,
    is_extractor_spec,
    register_extractors,
    resolve_extractor,
)
from ganlib.metrics.features import dataset_features
from ganlib.metrics.sources import PreparedImages
from ganlib.metrics.weight_files import FID_INCEPTION_FILE, find_is_inception_weights

LOG = plain_logger("scenegan-tests")
WEIGHTS_DIR = REPO_ROOT / load_test_params().base.paths.weights
CPU = torch.device("cpu")
# The pool features of golden_image(), computed once on the CPU with the real weights;
# rewrite with `python tests/test_metrics_inception.py` only when a change to them is intended.
GOLDEN_FEATURES = Path(__file__).with_name("data") / "fid_inception_pool3_golden.npy"
# Machine to machine (CPU kernels, channels_last) features move by ~3e-6 here; the wrong input
# scaling (x - 127.5) / 127.5 moves them by 7e-3, torch's own bilinear resize by 0.24.
GOLDEN_ATOL = 1e-4

pytestmark = pytest.mark.skipif(
    not (WEIGHTS_DIR / FID_INCEPTION_FILE).is_file(),
    reason=f"FID Inception weights not installed in {WEIGHTS_DIR}; run `make weights`",
)


def inception_params():
    return load_test_params(
        # fp32: these tests hold the extractor to torch-fidelity's fp32 numbers and a golden vector.
        ("evaluate.extractor=fid-inception-v3-tf2015", "evaluate.device=cpu", "evaluate.batch_size=4",
         "evaluate.metrics=[fid]", f"base.paths.weights={WEIGHTS_DIR}", "evaluate.precision=fp32")
    )


@pytest.fixture(scope="module")
def fid_extractor():
    params = inception_params()
    spec = resolve_extractor(params.evaluate, WEIGHTS_DIR, REPO_ROOT)
    return build_extractor(spec, [POOL_FEATURES], CPU)


def test_pool_features_have_the_standard_shape_and_scale(fid_extractor):
    images = PreparedImages(smooth_images(4, seed=11, resolution=32))
    features = dataset_features(images, fid_extractor, 4, CPU)[POOL_FEATURES]
    assert features.shape == (4, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # average of ReLU outputs
    assert (features.std(dim=0) > 0).float().mean() > 0.5  # different images, different features


def golden_image() -> np.ndarray:
    """A fixed 64x64 uint8 image made with integer arithmetic only: gradients, a disc, a bar."""
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1)
    image[(x - 40) ** 2 + (y - 22) ** 2 < 12**2] = (250, 240, 40)
    image[48:56, 8:30] = (20, 60, 20)
    return image.astype(np.uint8)


def golden_image_features(extractor) -> np.ndarray:
    return dataset_features(PreparedImages(golden_image()[None]), extractor, 1, CPU)[POOL_FEATURES][0].numpy()


def test_features_of_a_fixed_image_match_the_pinned_golden_vector(fid_extractor):
    # Pins the whole input path (uint8 -> TF1 bilinear resize to 299 -> (x - 128) / 128 -> network),
    # which a range check on the features cannot: a slightly wrong scaling still gives O(0.1-1) values.
    golden = np.load(GOLDEN_FEATURES)
    assert golden.dtype == np.float32 and golden.shape == (2048,)
    ours = golden_image_features(fid_extractor)
    np.testing.assert_allclose(ours, golden, rtol=0, atol=GOLDEN_ATOL)


@pytest.mark.slow  # 20 images through Inception: ~3 s alone, over 20 s when the 2 cores are shared
def test_fid_with_itself_is_zero_and_matches_calculate_metrics(tmp_path, no_network):
    params = inception_params()
    images = smooth_images(4, seed=2)
    a = write_prepared_dataset(tmp_path / "a", images)
    a_shuffled = write_prepared_dataset(tmp_path / "a2", images[::-1].copy())  # new hash: features recomputed
    b = write_prepared_dataset(tmp_path / "b", smooth_images(4, seed=3))

    same = compare_datasets(a, a_shuffled, params, LOG, tmp_path)
    assert same.reference_stats_cached == (False, False)
    assert 0.0 <= same.fid < 1e-3

    ours = compare_datasets(a, b, params, LOG, tmp_path)
    register_extractors()
    theirs = calculate_metrics(
        input1=PreparedImages(images), input2=PreparedImages(smooth_images(4, seed=3)),
        feature_extractor=FID_INCEPTION, feature_extractor_weights_path=str(WEIGHTS_DIR / FID_INCEPTION_FILE),
        fid=True, batch_size=4, cuda=False, cache=False, verbose=False, save_cpu_ram=True,
    )
    assert ours.fid > 1.0
    assert ours.fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


def test_features_agree_with_torch_fidelity_inception(fid_extractor):
    is_weights, reason = find_is_inception_weights(load_test_params().evaluate.inception_weights, REPO_ROOT)
    if is_weights is None:
        pytest.skip(f"cannot compare with torch-fidelity's {TORCH_FIDELITY_INCEPTION}: {reason}")
    theirs_extractor = build_extractor(is_extractor_spec(is_weights), [POOL_FEATURES], CPU)
    images = PreparedImages(smooth_images(3, seed=5, resolution=32))
    ours = dataset_features(images, fid_extractor, 3, CPU)[POOL_FEATURES]
    theirs = dataset_features(images, theirs_extractor, 3, CPU)[POOL_FEATURES]
    assert np.allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    spec = resolve_extractor(inception_params().evaluate, WEIGHTS_DIR, REPO_ROOT)
    features = golden_image_features(build_extractor(spec, [POOL_FEATURES], CPU))
    GOLDEN_FEATURES.parent.mkdir(exist_ok=True)
    np.save(GOLDEN_FEATURES, features.astype(np.float32))
    print(f"wrote {GOLDEN_FEATURES}: mean {features.mean():.6f}, max {features.max():.6f}")


def test_bf16_features_are_close_to_fp32_and_named_apart(fid_extractor):
    """bf16 autocast (chosen where it is measured faster) moves features a little, never silently."""
    import dataclasses

    from ganlib.metrics.extractors import build_extractor
    from ganlib.metrics.speed import with_measured_speed

    settings = inception_params().evaluate.model_copy(update={"precision": "bf16", "channels_last": True})
    fp32_spec = resolve_extractor(inception_params().evaluate, WEIGHTS_DIR, REPO_ROOT)
    bf16_spec, how = with_measured_speed(fp32_spec, settings, CPU, Path("/nonexistent"))
    assert "as set" in how and bf16_spec.identity() == f"{fp32_spec.name}@bf16" != fp32_spec.identity()
    assert "bf16" in bf16_spec.description
    exact = golden_image_features(fid_extractor)
    approximate = golden_image_features(build_extractor(bf16_spec, [POOL_FEATURES], CPU))
    relative = np.abs(approximate - exact).max() / np.abs(exact).max()
    assert 0 < relative < 0.1, relative  # measured 0.06: bf16 keeps ~3 significant digits through ~90 layers
    assert dataclasses.replace(bf16_spec, precision="fp32").identity() == fp32_spec.identity()
