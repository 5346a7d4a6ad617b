"""`scenegan data ensure` on a fresh clone: no data, no remote -> the default dataset, DVC consistent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO_ROOT, TINY_DATA, run, set_params

from ganlib.config import load_params
from ganlib.data.raw_data import ensure_raw_data
from ganlib.io.provenance import dvc_tracked_md5
from ganlib.logs import plain_logger

LOG = plain_logger("scenegan-tests")


def test_fresh_clone_generates_the_recorded_dataset(project_copy):
    """The committed data.dvc describes exactly what the generator makes from the committed params."""
    (project_copy / "data.dvc").write_text((REPO_ROOT / "data.dvc").read_text())
    status = ensure_raw_data(load_params(project_copy / "params.yaml"), project_copy, LOG)
    assert status.origin == "generated"
    assert not status.data_dvc_changed
    assert status.md5_after == dvc_tracked_md5(REPO_ROOT / "data.dvc")
    dvc = str(Path(sys.executable).with_name("dvc"))
    assert json.loads(run([dvc, "status", "data.dvc", "--json"], project_copy).stdout or "{}") == {}


def test_existing_data_is_left_alone(project_copy):
    set_params(project_copy / "params.yaml", TINY_DATA)
    raw = project_copy / "data/raw/mine"
    raw.mkdir(parents=True)
    (raw / "photo.jpg").write_bytes(b"not really a photo")
    status = ensure_raw_data(load_params(project_copy / "params.yaml"), project_copy, LOG)
    assert status.origin == "present"
    assert sorted(p.name for p in (project_copy / "data/raw").rglob("*")) == ["mine", "photo.jpg"]


def test_data_dvc_of_another_folder_is_not_this_datasets_version(tmp_path):
    """base.paths.raw elsewhere: data.dvc (tracking data/raw) names another dataset; only <raw>.dvc counts."""
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n")
    photos = tmp_path / "other" / "photos"
    photos.mkdir(parents=True)
    (photos / "photo.jpg").write_bytes(b"not really a photo")
    params = load_params(REPO_ROOT / "params.yaml", ["base.paths.raw=other/photos"])
    assert ensure_raw_data(params, tmp_path, LOG).md5_after is None
    (tmp_path / "other" / "photos.dvc").write_text("outs:\n- md5: fedcba9876543210fedcba9876543210.dir\n  path: photos\n")
    assert ensure_raw_data(params, tmp_path, LOG).md5_after == "fedcba9876543210fedcba9876543210"


def test_the_version_of_a_folder_added_on_its_own_is_read_from_its_dvc_file(project_copy):
    """What `dvc add other/photos` really writes (other/photos.dvc, path relative to it) is what counts."""
    from ganlib.io.provenance import dataset_md5

    (project_copy / "data.dvc").write_text((REPO_ROOT / "data.dvc").read_text())
    photos = project_copy / "other" / "photos"
    photos.mkdir(parents=True)
    (photos / "photo.jpg").write_bytes(b"not really a photo")
    run([str(Path(sys.executable).with_name("dvc")), "add", "other/photos"], project_copy)
    recorded = dvc_tracked_md5(project_copy / "other" / "photos.dvc")
    assert recorded and dataset_md5(project_copy, "other/photos") == recorded
    assert dataset_md5(project_copy, "data/raw") == dvc_tracked_md5(REPO_ROOT / "data.dvc") != recorded
    assert dataset_md5(project_copy, "other") is None and dataset_md5(project_copy, "data/raw/sub") is None
