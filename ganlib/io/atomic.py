"""Writes that either happen completely or not at all.

A stage killed half-way (SIGKILL, full disk, bad input found late) must never
leave a half-written output that the next stage or `dvc repro` mistakes for a
finished one, and must never destroy the previous good output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `path` whole or not at all, with the mode a plain open() would give it (0o666 & ~umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files: outputs others (a web server, a teammate) cannot read.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Build a directory beside `target`, then swap it into place on success.

    On any exception the staging directory is removed and `target` (if it
    existed) is left exactly as it was. A process killed outright (SIGKILL)
    leaves its staging directory behind; the next call removes such leftovers.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(target)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(target)}{os.getpid()}-", dir=target.parent))
    # mkdtemp makes 0700 directories; the result should look like any other output.
    staging.chmod(0o777 & ~_current_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_directory(staging, target)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.staging-"


def _remove_abandoned_staging(target: Path) -> None:
    """Delete staging directories of `target` whose creating process no longer exists."""
    for leftover in target.parent.glob(_staging_prefix(target) + "*"):
        pid_text = leftover.name[len(_staging_prefix(target)):].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable: without this a power cut can undo it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_directory(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing an existing directory with a minimal window.

    POSIX cannot atomically swap two non-empty directories, so the old one is
    first renamed aside (one rename), the new one renamed in (one rename), and
    only then is the old one deleted.
    """
    retired = None
    if target.exists() or target.is_symlink():
        retired = target.with_name(f".{target.name}.retired-{os.getpid()}")
        if retired.exists():
            shutil.rmtree(retired)
        os.replace(target, retired)
    try:
        os.replace(new, target)
    except BaseException:
        if retired is not None:
            os.replace(retired, target)
        raise
    fsync_directory(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
