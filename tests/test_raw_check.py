"""ganlib.data.raw_check and `scenegan data check`: links and special files in data/raw are listed and refused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run

from ganlib.data import raw_check
from ganlib.data.raw_check import RawDataCheckError, check_raw_data, find_unsafe_entries

SCENEGAN = str(Path(sys.executable).with_name("scenegan"))


@pytest.fixture
def linked_raw(tmp_path: Path) -> Path:
    """data/raw with two photos and everything people put there by hand: links, a FIFO, a socket."""
    raw = tmp_path / "data" / "raw"
    (raw / "trips").mkdir(parents=True)
    (raw / "a.png").write_bytes(b"a photo")
    (raw / "trips" / "b.png").write_bytes(b"another photo")
    (raw / "trips" / "host.png").symlink_to("/etc/hostname")
    (raw / "gone.png").symlink_to("nowhere.png")
    (raw / ".hidden-link").symlink_to("a.png")           # preprocess skips hidden names; `dvc add` does not
    (raw / "alias").symlink_to("trips", target_is_directory=True)
    os.mkfifo(raw / "pipe.png")
    return raw


def test_links_fifos_and_sockets_are_listed_with_their_targets(linked_raw: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(linked_raw / "s.sock"))
        check = find_unsafe_entries(linked_raw)
    assert [(e.path, e.kind, e.target) for e in check.unsafe] == [
        (".hidden-link", raw_check.SYMLINK, "a.png"),
        ("alias", raw_check.SYMLINK, "trips"),
        ("gone.png", raw_check.BROKEN_SYMLINK, "nowhere.png"),
        ("pipe.png", raw_check.FIFO, None),
        ("s.sock", raw_check.SOCKET, None),
        ("trips/host.png", raw_check.SYMLINK, "/etc/hostname"),
    ]
    assert not check.ok and check.checked == 9  # two photos, the trips folder, six refused entries


def test_the_error_lists_every_entry_says_why_and_what_to_do(linked_raw: Path) -> None:
    with pytest.raises(RawDataCheckError) as error:
        check_raw_data(linked_raw, "data/raw")
    lines = str(error.value).splitlines()
    assert lines[0].startswith("data/raw: 5 entries that must not be read (`dvc add` would copy")
    assert lines[1:6] == [
        "  data/raw/.hidden-link: symlink to a.png",
        "  data/raw/alias: symlink to trips",
        "  data/raw/gone.png: broken symlink to nowhere.png",
        "  data/raw/pipe.png: FIFO",
        "  data/raw/trips/host.png: symlink to /etc/hostname",
    ]
    assert "delete FIFOs" in lines[-1] and "scenegan data check" in lines[-1]
    assert len(error.value.entries) == 5


def test_a_long_listing_is_cut_in_the_message_but_kept_whole_on_the_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(raw_check.LISTED_IN_MESSAGE + 5):
        (raw / f"{index:03d}.png").symlink_to(f"/nowhere/{index}")
    with pytest.raises(RawDataCheckError) as error:
        check_raw_data(raw, "raw")
    assert "  ... and 5 more" in str(error.value).splitlines()
    assert len(error.value.entries) == raw_check.LISTED_IN_MESSAGE + 5


def test_links_into_the_dvc_cache_are_dvcs_own_and_pass(tmp_path: Path) -> None:
    # What `dvc checkout` makes of data/raw with `cache.type symlink`.
    cached = tmp_path / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef0123"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a photo")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "a.png").symlink_to(cached)
    (raw / "dir").symlink_to(cached.parent, target_is_directory=True)  # a folder in the cache: not DVC's doing
    check = find_unsafe_entries(raw, allowed_link_targets=[tmp_path / ".dvc" / "cache"])
    assert [(e.path, e.kind) for e in check.unsafe] == [("dir", raw_check.SYMLINK)]
    assert [e.path for e in find_unsafe_entries(raw).unsafe] == ["a.png", "dir"]  # no cache given: refused


def test_a_missing_folder_is_a_clear_error_and_a_clean_one_passes(tmp_path: Path) -> None:
    with pytest.raises(RawDataCheckError, match="raw dataset directory not found"):
        check_raw_data(tmp_path / "nope", "nope")
    (tmp_path / "ok" / "sub").mkdir(parents=True)
    (tmp_path / "ok" / "sub" / "a.png").write_bytes(b"x")
    assert check_raw_data(tmp_path / "ok", "ok").ok


def test_scenegan_data_check_exits_2_with_the_listing_and_0_when_clean(tmp_path: Path, linked_raw: Path) -> None:
    params = shutil.copy2(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    refused = run([SCENEGAN, "data", "check", "--params", str(params)], tmp_path, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "data/raw/trips/host.png: symlink to /etc/hostname" in refused.stderr
    assert "data/raw/pipe.png: FIFO" in refused.stderr and "Traceback" not in refused.stderr

    machine = run([SCENEGAN, "data", "check", "--params", str(params), "--json"], tmp_path, check=False)
    assert machine.returncode == 2
    document = json.loads(machine.stdout)
    assert document["ok"] is False and "data/raw/gone.png: broken symlink to nowhere.png" in document["error"]
    assert {"path": "trips/host.png", "kind": "symlink", "target": "/etc/hostname"} in document["entries"]
    assert {"path": "pipe.png", "kind": "FIFO", "target": None} in document["entries"]

    for name in (".hidden-link", "alias", "gone.png", "pipe.png", "trips/host.png"):
        (linked_raw / name).unlink()
    clean = run([SCENEGAN, "data", "check", "--params", str(params)], tmp_path)
    assert "data/raw: no symlinks or special files among 3 entries" in clean.stdout
    assert "Next: `dvc add data/raw`" in clean.stdout
    document = json.loads(run([SCENEGAN, "data", "check", "--params", str(params), "--json"], tmp_path).stdout)
    assert document["ok"] is True and document["unsafe"] == [] and document["checked"] == 3


def test_dvcs_own_symlinks_pass_and_a_hand_made_one_is_refused(project_copy: Path) -> None:
    """With `cache.type symlink`, `dvc add` turns every file into a link into .dvc/cache: those are the dataset."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    raw = project_copy / "data" / "raw"
    (raw / "trips").mkdir(parents=True)
    (raw / "a.png").write_bytes(b"a photo")
    (raw / "trips" / "b.png").write_bytes(b"another photo")
    run([dvc, "config", "cache.type", "symlink"], project_copy)
    run([dvc, "add", "data/raw"], project_copy)
    assert (raw / "a.png").is_symlink() and (raw / "trips" / "b.png").is_symlink()
    assert check_raw_data(raw, "data/raw", [project_copy / raw_check.DVC_CACHE_DIR]).ok

    (raw / "host.png").symlink_to("/etc/hostname")
    with pytest.raises(RawDataCheckError) as error:
        check_raw_data(raw, "data/raw", [project_copy / raw_check.DVC_CACHE_DIR])
    assert [(e.path, e.kind, e.target) for e in error.value.entries] == [("host.png", raw_check.SYMLINK, "/etc/hostname")]
