"""All-or-nothing writes: a failure never leaves half an output or loses the old one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ganlib.io.atomic import atomic_write_json, staged_directory


def test_staged_directory_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_directory(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_directory_keeps_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("bad input found late")
    assert (target / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_directory_has_ordinary_permissions(tmp_path):
    with staged_directory(tmp_path / "out") as staging:
        (staging / "x").write_text("x")
    mode = stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert mode & 0o055, f"output directory is {oct(mode)}; others cannot read it"


def test_leftovers_of_a_killed_process_are_removed(tmp_path):
    target = tmp_path / "out"
    code = (
        "import os, sys\n"
        "from ganlib.io.atomic import staged_directory\n"
        f"with staged_directory({str(target)!r}) as s:\n"
        "    (s / 'partial').write_text('x')\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert any(p.name.startswith(".out.staging-") for p in tmp_path.iterdir())
    with staged_directory(target) as staging:
        (staging / "done").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_json_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path):
    old_umask = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o640


def test_renames_are_made_durable_by_syncing_the_directory(tmp_path, monkeypatch):
    synced_directories = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced_directories.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert synced_directories == [tmp_path.stat().st_ino]
    with staged_directory(tmp_path / "out") as staging:
        (staging / "x").write_text("x")
    assert synced_directories[-1] == tmp_path.stat().st_ino
