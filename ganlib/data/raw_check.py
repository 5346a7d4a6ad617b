"""`scenegan data check`: entries of the raw dataset folder that neither `dvc add` nor preprocess may read.

Why they are refused rather than skipped: `dvc add data/raw` reads through
symlinks. A link to /etc/hostname puts that file's bytes into the dataset
version, the DVC cache and, after `dvc push`, the remote; a broken link makes
the whole add fail with a confusing "No such file"; a FIFO blocks it forever,
waiting for a writer; sockets and device files are worse. Skipping them in
preprocess alone would not help: by then `dvc add` has already copied them.
`scenegan data import` never creates such entries, but people copy or link
files into data/raw by hand, so the README flow runs this check before
`dvc add`, and preprocess runs it before it reads any file.

The one kind of symlink allowed is DVC's own: with `cache.type symlink`,
`dvc checkout` makes every file of data/raw a link to a regular file in the
project's DVC cache, and those links are the dataset.

Hidden entries are checked too: preprocess skips them, but `dvc add` reads them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ganlib.errors import UserFacingError

# Kinds of refused entry.
SYMLINK = "symlink"
BROKEN_SYMLINK = "broken symlink"
FIFO = "FIFO"
SOCKET = "socket"
BLOCK_DEVICE = "block device"
CHARACTER_DEVICE = "character device"
SPECIAL_FILE = "special file"
# With `dvc config cache.type symlink`, every file of data/raw is a symlink
# into the repository's DVC cache: links there are the dataset, not an escape.
DVC_CACHE_DIR = ".dvc/cache"
LISTED_IN_MESSAGE = 20  # entries an error message names; the exception's `entries` hold them all

FIX = (
    "Replace each symlink with a copy of the file it points to, or delete it (broken ones: delete); "
    "delete FIFOs, sockets and device files. Then run `scenegan data check` again"
)
WHY = (
    "`dvc add` would copy each symlink's target into the dataset and the DVC cache, "
    "fail on a broken link, and block forever on a FIFO"
)


@dataclass(frozen=True)
class UnsafeEntry:
    path: str               # relative to the checked folder, POSIX separators
    kind: str               # one of the kinds above
    target: str | None = None  # a symlink's target, as written in the link

    def describe(self, shown_root: str) -> str:
        where = f"{shown_root}/{self.path}"
        return f"{where}: {self.kind} to {self.target}" if self.target is not None else f"{where}: {self.kind}"


@dataclass(frozen=True)
class RawCheck:
    directory: Path
    checked: int                        # entries examined: files, folders, links, special files
    unsafe: tuple[UnsafeEntry, ...]     # sorted by path

    @property
    def ok(self) -> bool:
        return not self.unsafe


class RawDataCheckError(UserFacingError, ValueError):
    """The raw folder is missing, or holds entries that must not be read; `entries` lists the latter."""

    def __init__(self, message: str, entries: Sequence[UnsafeEntry] = ()) -> None:
        super().__init__(message)
        self.entries = tuple(entries)

    @property
    def json_details(self) -> dict:
        """What `--json` adds to the error document: the refused entries, one object each."""
        return {"entries": [{"path": e.path, "kind": e.kind, "target": e.target} for e in self.entries]}


def find_unsafe_entries(raw_dir: Path, allowed_link_targets: Sequence[Path] = ()) -> RawCheck:
    """Walk `raw_dir` without following any link and list what must not be read (see the module doc).

    `allowed_link_targets`: folders (the DVC cache) that a symlink may lead
    into, when it ends at a regular file there.
    """
    allowed = tuple(os.path.realpath(path) for path in allowed_link_targets)
    unsafe: list[UnsafeEntry] = []
    checked = 0
    stack = [(str(raw_dir), "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # an unreadable folder: `dvc add` and preprocess each report it in their own words
        for entry in entries:
            checked += 1
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel))
                continue
            try:
                problem = _entry_problem(entry, rel, allowed)
            except FileNotFoundError:
                continue  # removed while we looked: not there for `dvc add` either
            if problem is not None:
                unsafe.append(problem)
    return RawCheck(Path(raw_dir), checked, tuple(sorted(unsafe, key=lambda item: item.path)))


def check_raw_data(raw_dir: Path, display_name: str, allowed_link_targets: Sequence[Path] = ()) -> RawCheck:
    """`scenegan data check`: the check when the folder is safe to `dvc add`; otherwise RawDataCheckError."""
    if not raw_dir.is_dir():
        raise RawDataCheckError(
            f"{display_name}: raw dataset directory not found; import photos with `scenegan data import SRC`, "
            "fetch them with `dvc pull`, or set base.paths.raw"
        )
    return refuse_unsafe_entries(raw_dir, display_name, allowed_link_targets)


def refuse_unsafe_entries(raw_dir: Path, display_name: str, allowed_link_targets: Sequence[Path] = ()) -> RawCheck:
    """RawDataCheckError listing the unsafe entries of `raw_dir`, if any (a missing folder is not checked here)."""
    if not raw_dir.is_dir():
        return RawCheck(Path(raw_dir), 0, ())
    check = find_unsafe_entries(raw_dir, allowed_link_targets)
    if not check.ok:
        raise RawDataCheckError(unsafe_entries_message(check, display_name), check.unsafe)
    return check


def unsafe_entries_message(check: RawCheck, display_name: str) -> str:
    """What was found (the first LISTED_IN_MESSAGE entries, one a line), why it matters, and what to do."""
    listed = [f"  {entry.describe(display_name)}" for entry in check.unsafe[:LISTED_IN_MESSAGE]]
    more = len(check.unsafe) - len(listed)
    if more > 0:
        listed.append(f"  ... and {more} more")
    count = len(check.unsafe)
    return "\n".join([
        f"{display_name}: {count} {'entry' if count == 1 else 'entries'} that must not be read ({WHY}):",
        *listed,
        f"{FIX}.",
    ])


def _entry_problem(entry: os.DirEntry, rel: str, allowed: tuple[str, ...]) -> UnsafeEntry | None:
    """None for a regular file or a link into the DVC cache; otherwise what the entry is."""
    if entry.is_symlink():
        target = os.readlink(entry.path)
        try:
            mode = os.stat(entry.path).st_mode  # follows the link, loops included (ELOOP: broken)
        except OSError:
            return UnsafeEntry(rel, BROKEN_SYMLINK, target)
        real = os.path.realpath(entry.path)
        if stat.S_ISREG(mode) and any(os.path.commonpath([folder, real]) == folder for folder in allowed):
            return None  # DVC's own link into its cache (cache.type symlink)
        return UnsafeEntry(rel, SYMLINK, target)
    if entry.is_file(follow_symlinks=False):
        return None
    return UnsafeEntry(rel, _special_kind(entry.stat(follow_symlinks=False).st_mode))


def _special_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, FIFO), (stat.S_ISSOCK, SOCKET), (stat.S_ISBLK, BLOCK_DEVICE),
                       (stat.S_ISCHR, CHARACTER_DEVICE)):
        if test(mode):
            return kind
    return SPECIAL_FILE
