"""All-or-nothing writes: a failure never leaves half an output or loses the old one."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ganlib.io.atomic import (
    atomic_copy_file,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temporaries,
    staged_directory,
)


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


def test_atomic_writes_never_set_the_process_umask(tmp_path, monkeypatch):
    """Setting the umask to read it would let another thread create world-writable files meanwhile."""
    old_umask = os.umask(0o027)
    try:
        def refuse(mask):
            raise AssertionError(f"os.umask({mask:#o}) called")

        monkeypatch.setattr(os, "umask", refuse)
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with staged_directory(tmp_path / "out") as staging:
            (staging / "x").write_text("x")
        monkeypatch.undo()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~0o027
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~0o027


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the umask from /proc (Linux)")
def test_another_thread_never_sees_the_umask_change_during_writes(tmp_path):
    def umask_now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
        raise AssertionError("no Umask line")

    old_umask = os.umask(0o022)
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(umask_now())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(300):
            atomic_write_bytes(tmp_path / f"{i}.bin", b"x")
    finally:
        stop.set()
        watcher.join(timeout=60)
        os.umask(old_umask)
    assert seen == {0o022}
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o644}


def killed_mid_write(path: Path) -> None:
    """An atomic write whose process is SIGKILLed after writing its temporary, before the rename."""
    code = (
        "import os\n"
        "import ganlib.io.atomic as atomic\n"
        "atomic.os.replace = lambda *a: os.kill(os.getpid(), 9)\n"
        f"atomic.atomic_write_bytes({str(path)!r}, b'half')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120)


def _temporaries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_temporaries_name_their_writer_and_a_dead_writers_are_removed(tmp_path):
    cache = tmp_path / "cache" / "fid"
    atomic_write_bytes(cache / "kept.npz", b"real entry")
    killed_mid_write(cache / "entry.npz")
    [leftover] = _temporaries(cache)
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:8]
    assert re.match(rf"^\.entry\.npz\.\d+@{re.escape(host)}", leftover.name), leftover.name

    assert remove_stale_temporaries(cache) == [leftover]
    assert sorted(p.name for p in cache.iterdir()) == ["kept.npz"]
    assert (cache / "kept.npz").read_bytes() == b"real entry"


def test_a_live_writers_temporary_is_kept_until_it_exits(tmp_path):
    code = (
        "import sys\n"
        "import ganlib.io.atomic as atomic\n"
        "def wait(*a):\n"
        "    print('written', flush=True)\n"
        "    sys.stdin.read()\n"  # until the test closes our stdin
        "atomic.os.replace = wait\n"
        f"atomic.atomic_write_bytes({str(tmp_path / 'entry.npz')!r}, b'in progress')\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
        [temporary] = _temporaries(tmp_path)
        assert str(writer.pid) in temporary.name
        assert remove_stale_temporaries(tmp_path) == [] and temporary.exists()
    finally:
        writer.stdin.close()
        writer.wait(timeout=120)
    # It "renamed" nothing and exited: now its temporary is abandoned.
    assert remove_stale_temporaries(tmp_path) == [temporary]


def test_temporaries_that_cannot_be_checked_are_removed_only_when_very_old(tmp_path):
    other_host = tmp_path / ".entry.npz.4242@some-other-host.0123abcd.tmp"
    no_writer = tmp_path / ".entry.npz.k2j3h4g5.tmp"  # mkstemp's name, from before writers were named
    real = [tmp_path / "entry.npz", tmp_path / ".hidden", tmp_path / "notes.tmp"]
    for path in (other_host, no_writer, *real):
        path.write_bytes(b"x")
    (tmp_path / ".dir.1@x.ab.tmp").mkdir()
    assert remove_stale_temporaries(tmp_path) == []

    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (other_host, no_writer, *real):
        os.utime(path, (two_days_ago, two_days_ago))
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([other_host, no_writer])
    assert all(path.read_bytes() == b"x" for path in real) and (tmp_path / ".dir.1@x.ab.tmp").is_dir()


def test_a_missing_directory_has_no_temporaries(tmp_path):
    assert remove_stale_temporaries(tmp_path / "never-written") == []


def test_atomic_copy_file_copies_whole_with_the_given_mode_and_leaves_no_temporary(tmp_path):
    source = tmp_path / "elsewhere" / "big.bin"
    source.parent.mkdir()
    source.write_bytes(os.urandom(3 << 20))
    target = tmp_path / "weights" / "big.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    atomic_copy_file(source, target, mode=0o644)
    assert target.read_bytes() == source.read_bytes() and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["big.bin"]


# --------------------------------------------------------------------------- a full disk (issue 18, item 7)
#
# Without filling a real disk: a tiny tmpfs needs privileges. Two injections, both below the writer's
# own code, so its real write, flush, fsync, clean-up and error paths run:
# * the temporary's descriptor is opened on /dev/full, whose every write the kernel fails with ENOSPC
#   (the temporary itself is still created beside the target, so its removal is checked);
# * os.fsync fails with ENOSPC, as it does on filesystems with delayed allocation (ext4, XFS, NFS)
#   where the write succeeds and the full disk shows only when the data must reach the disk.

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def writes_to_dev_full(monkeypatch) -> list[Path]:
    """Make the atomic writer's temporaries write into /dev/full; returns the temporaries it created."""
    from ganlib.io import atomic

    created: list[Path] = []
    real_temporary = atomic._writer_temporary

    def temporary_on_dev_full(path: Path) -> tuple[int, str]:
        fd, tmp = real_temporary(path)
        os.close(fd)
        created.append(Path(tmp))
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(atomic, "_writer_temporary", temporary_on_dev_full)
    return created


def assert_names_the_file_its_size_and_the_free_space(err, path: Path, needed: int) -> None:
    import errno

    from ganlib.errors import UserFacingError

    message = str(err.value)
    assert isinstance(err.value, UserFacingError) and isinstance(err.value, OSError)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert message.startswith(f"{path}: ") and "no space left on device" in message
    assert f"it needed {needed:,} bytes" in message and re.search(r"[\d,]+ bytes free on that filesystem", message)
    assert "[Errno" not in message


@needs_dev_full
@pytest.mark.parametrize("size", [10, 3 << 20])  # fails at flush (buffered) / at write (larger than the buffer)
def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, size):
    from ganlib.io.atomic import DiskFullError

    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"the previous checkpoint")
    temporaries = writes_to_dev_full(monkeypatch)
    with pytest.raises(DiskFullError) as err:
        atomic_write_bytes(target, b"x" * size)
    assert_names_the_file_its_size_and_the_free_space(err, target, size)
    assert "the previous file is unchanged" in str(err.value)
    assert target.read_bytes() == b"the previous checkpoint"
    assert temporaries and not any(tmp.exists() for tmp in temporaries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


@needs_dev_full
def test_a_full_disk_while_copying_names_the_target_and_the_sources_size(tmp_path, monkeypatch):
    from ganlib.io.atomic import DiskFullError

    source = tmp_path / "weights.part"
    source.write_bytes(b"w" * 5000)
    target = tmp_path / "weights" / "model.pt"
    writes_to_dev_full(monkeypatch)
    with pytest.raises(DiskFullError) as err:
        atomic_copy_file(source, target)
    assert_names_the_file_its_size_and_the_free_space(err, target, 5000)
    assert "no partial file was left" in str(err.value)
    assert list(target.parent.iterdir()) == []


def test_a_full_disk_found_by_fsync_is_named_the_same_way(tmp_path, monkeypatch):
    import errno

    from ganlib.io.atomic import DiskFullError

    def no_room(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "stats.jsonl"
    target.write_text("old\n")
    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(DiskFullError) as err:
        atomic_write_bytes(target, b"new\n")
    assert_names_the_file_its_size_and_the_free_space(err, target, 4)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["stats.jsonl"]


def test_a_quota_is_named_as_a_quota_and_other_errors_pass_unchanged(tmp_path, monkeypatch):
    import errno

    from ganlib.io.atomic import DiskFullError

    failure = [OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))]

    def fail(fd: int) -> None:
        raise failure[0]

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(DiskFullError, match="disk quota exceeded"):
        atomic_write_bytes(tmp_path / "a", b"1")
    failure[0] = OSError(errno.EIO, os.strerror(errno.EIO))
    with pytest.raises(OSError) as err:
        atomic_write_bytes(tmp_path / "a", b"1")
    assert not isinstance(err.value, DiskFullError) and err.value.errno == errno.EIO


@needs_dev_full
def test_a_full_disk_inside_a_staged_directory_names_the_output_directory(tmp_path):
    """Any writer inside the staging (numpy, torch) that meets ENOSPC: named after the output, old one kept."""
    from ganlib.io.atomic import DiskFullError

    target = tmp_path / "prepared"
    target.mkdir()
    (target / "images.npy").write_bytes(b"old")
    with pytest.raises(DiskFullError) as err:
        with staged_directory(target) as staging:
            (staging / "manifest.json").write_text("{}")
            with open("/dev/full", "wb") as full:  # a real ENOSPC from the kernel, with no file name in it
                full.write(b"x" * 100)
                full.flush()
    message = str(err.value)
    assert message.startswith(f"{target}: could not write this directory: no space left on device")
    assert "2 bytes were written before the disk filled" in message and "the previous directory is unchanged" in message
    assert [p.name for p in target.iterdir()] == ["images.npy"] and [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_a_disk_full_error_survives_pickling_and_prefects_json():
    """A task's exception crosses processes (pickle) and is recorded on a failed run (Prefect's JSON, message only)."""
    import errno
    import pickle

    from prefect.serializers import JSONSerializer

    from ganlib.io.atomic import DiskFullError

    error = DiskFullError("/x: could not write this file", Path("/x"), errno.EDQUOT)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is DiskFullError and str(back) == str(error) and back.errno == errno.EDQUOT and back.filename == "/x"
    recorded = JSONSerializer().loads(JSONSerializer().dumps(error))
    assert type(recorded) is DiskFullError and str(recorded) == str(error)
