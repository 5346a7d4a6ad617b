"""FD_DINOv2: reported unavailable, naming the install command, when its weights are absent (never downloaded);
computed, cached and repeatable through a tiny random DINOv2 checkpoint in the released format; and our ViT
gives the CLS tokens facebookresearch/dinov2's own DinoVisionTransformer gave for the same weights and images
(tests/data/dinov2_reference.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_metrics_support import TinyGenerator, TinyInfo, no_network, project, tiny_params  # noqa: F401 (fixtures)

from ganlib.logs import plain_logger
from ganlib.metrics import extractors, weight_files
from ganlib.metrics.dinov2 import DinoV2ViT, dinov2_from_state_dict, load_dinov2
from ganlib.metrics.evaluate import score_generator
from ganlib.metrics.report import EvaluationReport, render_table

LOG = plain_logger("scenegan-tests")


def tiny_checkpoint(path, seed: int = 0) -> DinoV2ViT:
    """A 2-block, 64-wide DINOv2 ViT with random weights, saved as a plain state dict like *_pretrain.pth."""
    torch.manual_seed(seed)
    model = DinoV2ViT(dim=64, depth=2, patch_size=14, grid=4)
    with torch.no_grad():
        for parameter in model.parameters():  # the zero-initialised tokens would make every CLS token alike
            parameter.normal_(0, 0.2)
    torch.save(model.state_dict(), path)
    return model.eval()


def test_fd_dinov2_without_weights_is_unavailable_and_names_the_install_command(tmp_path, no_network):
    root = project(tmp_path)
    params = tiny_params("evaluate.metrics=[fid,fd_dinov2]")
    report = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)

    assert report.fd_dinov2 is None and report.fid is not None
    reason = report.fd_dinov2_unavailable_reason
    assert "install --metric fd-dinov2" in reason and weight_files.DINOV2_FILE in reason
    # The folder as params.yaml names it, not resolved: the reason is recorded in git (evaluation.json).
    assert f"not found in {params.base.paths.weights};" in reason and str(root) not in reason
    data = report.to_json()
    assert data["fd_dinov2"] is None and data["fd_dinov2_unavailable_reason"] == reason
    assert EvaluationReport.from_json(data).fd_dinov2_unavailable_reason == reason
    assert "fd_dinov2" not in report.metrics_json() and report.provenance_json()["fd_dinov2_unavailable_reason"] == reason
    [row] = [row for row in report.report_rows() if row["metric"] == "FD_DINOv2"]
    assert row["value"] == "n/a" and row["detail"].startswith("unavailable: DINOv2 ViT-B/14 weights")


def test_fd_dinov2_is_left_out_of_metrics_json_and_table_unless_asked_for(tmp_path):
    report = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[fid]"), LOG, project(tmp_path))
    assert "fd_dinov2" not in report.to_json() and "fd_dinov2_unavailable_reason" not in report.to_json()
    assert "FD_DINOv2" not in render_table(report.report_rows())


def test_a_dinov2_checkpoint_loads_strictly_and_gives_one_cls_token_per_image(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny.pth")
    loaded = load_dinov2(tmp_path / "tiny.pth")
    at_native_grid = torch.randn(3, 3, 56, 56)  # 4x4 patches: the stored positional embeddings as they are
    assert torch.equal(loaded(at_native_grid), model(at_native_grid)) and loaded(at_native_grid).shape == (3, 64)
    assert loaded(torch.randn(2, 3, 224, 224)).shape == (2, 64)  # 16x16 patches: embeddings interpolated
    with pytest.raises(ValueError, match="not a DINOv2 ViT state dict"):
        dinov2_from_state_dict({"something": torch.zeros(1)})


def test_fd_dinov2_through_a_tiny_checkpoint_is_cached_and_repeatable(tmp_path, monkeypatch, no_network):
    root = project(tmp_path)
    params = tiny_params("evaluate.metrics=[fd_dinov2]")
    checkpoint = root / params.base.paths.weights / weight_files.DINOV2_FILE
    checkpoint.parent.mkdir(parents=True)
    tiny_checkpoint(checkpoint)
    digest = weight_files.file_digest(checkpoint, "sha256")
    monkeypatch.setattr(weight_files, "DINOV2_SHA256", digest)  # the pin is the real file's; this is the tiny one
    monkeypatch.setattr(extractors, "DINOV2_SHA256", digest)

    first = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert first.fd_dinov2_unavailable_reason is None and first.fd_dinov2 > 0
    cached = list((root / params.base.paths.fid_cache).glob(f"*{extractors.DINOV2}*"))
    assert len(cached) == 1
    second = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert second.fd_dinov2 == first.fd_dinov2
    other = score_generator(TinyGenerator(seed=1), TinyInfo(), params, LOG, root)
    assert other.fd_dinov2 != first.fd_dinov2

    checkpoint.write_bytes(checkpoint.read_bytes()[:-1])  # a damaged file is refused, not loaded
    damaged = score_generator(TinyGenerator(), TinyInfo(), params, LOG, root)
    assert damaged.fd_dinov2 is None and "delete it and run" in damaged.fd_dinov2_unavailable_reason


# ------------------------------------------------------------------ against facebookresearch/dinov2's own model
#
# tests/data/dinov2_reference.json holds the CLS tokens that facebookresearch/dinov2's DinoVisionTransformer
# (hub configuration: LayerScale init_values=1.0, plain MLP, qkv bias, no registers, interpolate_offset 0.1, no
# antialias) produced for the weights and images that `reference_weights` / `reference_images` build from
# the seeds stored there. Their code ran once, outside this repository (none of it is kept here;
# tests/make_dinov2_reference.py regenerates the fixture); the fixture records their commit. Their model
# was built 128 wide (2 heads of 64, as every released ViT has), 2 blocks, patch 14, a 4 x 4 positional
# grid, so that heads, LayerScale, the MLP and the final norm all act.

REFERENCE = Path(__file__).parent / "data" / "dinov2_reference.json"


def reference_weights(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for every parameter, by name, from one numpy seed (the fixture's recipe).

    Matrices ~ N(0, 1/fan_in) keep activations O(1) through the blocks; norms and LayerScale near 1 and
    biases near 0, but none exactly, so a parameter read under the wrong name or left out changes the output.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        noise = rng.standard_normal(shape)
        if name in ("cls_token", "pos_embed", "mask_token"):
            values = 0.5 * noise
        elif len(shape) >= 2:
            values = noise / np.sqrt(np.prod(shape[1:]))
        elif name.endswith(".bias"):
            values = 0.1 * noise
        else:                                           # LayerNorm weight, LayerScale gamma
            values = 1.0 + 0.1 * noise
        state[name] = torch.from_numpy(values.astype(np.float32))
    return state


def reference_images(shape: list[int], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32))


def digest(tensors: list[torch.Tensor]) -> str:
    """sha256 of the float32 bytes, in order: tells a changed recipe (or numpy stream) from a changed model."""
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return hasher.hexdigest()


def test_our_vit_gives_facebookresearch_dinov2s_cls_tokens_for_the_same_weights():
    fixture = json.loads(REFERENCE.read_text())
    state = reference_weights(fixture["parameter_shapes"], fixture["weight_seed"])
    assert digest([state[name] for name in sorted(state)]) == fixture["weights_sha256"], \
        "the seed recipe no longer rebuilds the fixture's weights (numpy stream changed?): regenerate the fixture"
    model = dinov2_from_state_dict(state).eval()
    assert len(model.blocks) == 2 and model.blocks[0].attn.num_heads == 2
    for case in fixture["cases"]:
        images = reference_images(case["input_shape"], case["input_seed"])
        assert digest([images]) == case["input_sha256"]
        with torch.no_grad():
            ours32 = model(images)
            ours64 = model.double()(images.double())
            model.float()
        theirs32 = torch.tensor(case["cls_float32"], dtype=torch.float32)
        theirs64 = torch.tensor(case["cls_float64"], dtype=torch.float64)
        # float64 on both sides: only the order of additions differs, so 1e-9 of the tokens' scale (~1) is
        # far above round-off and far below any architectural slip (a wrong scale, norm or interpolation
        # moves tokens by 1e-3 or more). float32: kernels may sum in another order; 1e-4 absolute.
        assert torch.allclose(ours64, theirs64, rtol=0, atol=1e-9), case["input_shape"]
        assert torch.allclose(ours32, theirs32, rtol=0, atol=1e-4), case["input_shape"]
