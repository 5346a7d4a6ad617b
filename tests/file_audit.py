"""Which files a block of code opens, lists or changes, for tests that claim code stays off (part of) the disk.

Tests run as root here, so a read-only directory stops nothing; instead a
Python audit hook (sys.addaudithook) sees every Python-level file access:
open() and os.open (with their flags, so reads and writes are told apart),
directory listings, and mkdir/rename/remove and the like. It does not see C
code that opens files by itself (torch.save to a path, for one), so tests pair
it with an empty scratch HOME/TMPDIR/cwd where that matters.

Audit hooks cannot be removed: one hook is installed for the process on first
use and records only while a `file_access()` block is active.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class FileAccess:
    event: str    # the audit event: open, os.listdir, os.remove, ...
    path: str     # absolute where it was a path; a descriptor number as text otherwise
    writes: bool  # opened for writing, or created / changed / removed


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_LISTINGS = {"os.listdir", "os.scandir", "glob.glob"}
_CHANGES = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.link", "os.symlink",
    "os.chmod", "os.chown", "os.utime", "shutil.copyfile", "shutil.copymode", "shutil.rmtree",
}
_recording: list[list[FileAccess]] = []  # the records of the active file_access() blocks
_installed = False


def _path_text(value: object) -> str:
    if isinstance(value, (str, bytes, os.PathLike)):
        return os.path.abspath(os.fsdecode(value))
    return str(value)


def _hook(event: str, args: tuple) -> None:
    if not _recording:
        return
    try:  # an exception here would fail the audited operation itself
        if event == "open":
            path, mode, flags = args
            writes = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else any(c in (mode or "") for c in "wax+")
            access = FileAccess(event, _path_text(path), writes)
        elif event in _LISTINGS:
            access = FileAccess(event, _path_text(args[0] if args[0] is not None else "."), False)
        elif event in _CHANGES:
            access = FileAccess(event, _path_text(args[0]), True)
        else:
            return
        for record in _recording:
            record.append(access)
    except Exception:  # noqa: BLE001
        pass


@contextlib.contextmanager
def file_access() -> Iterator[list[FileAccess]]:
    """Record the file accesses made inside the block (by any thread running Python code)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    record: list[FileAccess] = []
    _recording.append(record)
    try:
        yield record
    finally:
        _recording.remove(record)


def under(accesses: list[FileAccess], directory: Path) -> list[FileAccess]:
    """The accesses to `directory` or anything inside it."""
    root = os.path.abspath(directory)
    return [a for a in accesses if a.path == root or a.path.startswith(root + os.sep)]
