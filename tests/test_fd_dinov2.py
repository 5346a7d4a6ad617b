"""FD_DINOv2: reported unavailable, naming the install command, when its weights are absent (never downloaded);
computed, cached and repeatable through a tiny random DINOv2 checkpoint in the released format."""

from __future__ import annotations

import pytest
import torch
from test_metrics_support import TinyGenerator, TinyInfo, no_network, project, tiny_params  # noqa: F401 (fixtures)

from ganlib.logs import plain_logger
from ganlib.metrics import extractors, weights
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
    assert "install --metric fd-dinov2" in reason and weights.DINOV2_FILE in reason
    assert str(root / params.base.paths.weights) in reason
    data = report.to_json()
    assert data["fd_dinov2"] is None and data["fd_dinov2_unavailable_reason"] == reason
    assert EvaluationReport.from_json(data).fd_dinov2_unavailable_reason == reason
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
    checkpoint = root / params.base.paths.weights / weights.DINOV2_FILE
    checkpoint.parent.mkdir(parents=True)
    tiny_checkpoint(checkpoint)
    digest = weights.file_digest(checkpoint, "sha256")
    monkeypatch.setattr(weights, "DINOV2_SHA256", digest)  # the pin is the real file's; this is the tiny one
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
