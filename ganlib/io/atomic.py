"""Writes that either happen completely or not at all.

A stage killed half-way (SIGKILL, full disk, bad input found late) must never
leave a half-written output that the next stage or `dvc repro` mistakes for a
finished one, and must never destroy the previous good output.

A full disk (or quota) is an error a person can fix, so it names what it
could not write, how many bytes that needed (when known) and how much the
filesystem has free: a bare `[Errno 28] No space left on device` says none
of that. The temporary is removed and the previous output stays.

A writer killed outright still leaves its temporary file behind. Temporaries
are named after their writer (`.NAME.PID@HOST.RANDOM.tmp`), so that
`remove_stale_temporaries` can tell an abandoned one from one being written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ganlib.errors import UserFacingError

# A temporary whose writer cannot be checked (a live pid, perhaps reused; another host; a name
# from before temporaries carried their writer) is removed only when untouched this long. A write
# here is one call that writes its bytes and renames within seconds to minutes, so a day-old
# temporary is abandoned; the worst a wrong guess does is make a stopped writer's rename fail
# loudly (FileNotFoundError), never corrupt an output.
STALE_TEMPORARY_AGE_S = 24 * 3600

# .NAME.PID@HOST.RANDOM.tmp, as _writer_temporary names them.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9+-]+)\.[0-9a-f]+\.tmp$")


# The errors that mean "the filesystem has no room for this write": out of space, out of quota.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(UserFacingError, OSError):
    """A write found no space (ENOSPC) or quota (EDQUOT) left; the message names the file, its size and the free space.

    Still an OSError with the original errno, so code that handles OSError handles it too.
    The message comes first and alone suffices: Prefect's JSON serializer, which
    records a failed run's exception, rebuilds it from the message only.
    """

    def __init__(self, message: str, path: str | Path | None = None, code: int = errno.ENOSPC) -> None:
        super().__init__(code, message, None if path is None else str(path))

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without OSError's "[Errno 28] ...: 'path'" wrapping

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.strerror, self.filename, self.errno)  # OSError's own order differs


@contextlib.contextmanager
def _naming_a_full_disk(path: Path, needed: int | None) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a DiskFullError about the file `path`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            raise
        size = f"it needed {needed:,} bytes" if needed is not None else "its size is unknown"
        raise _disk_full_error(exc.errno, path, size, "file") from exc


def _disk_full_error(code: int, path: Path, size: str, what: str) -> DiskFullError:
    reason = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
    try:
        free = f"{shutil.disk_usage(path.parent).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    previous = f"the previous {what} is unchanged" if path.exists() else f"no partial {what} was left"
    return DiskFullError(
        f"{path}: could not write this {what}: {reason} ({size}; {free} on that filesystem); {previous}. "
        "Free some space (or move base.paths to a larger disk) and run again",
        path, code,
    )


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `path` whole or not at all, with the mode a plain open() would give it (0o666 & ~umask)."""
    path = Path(path)
    with _replacing(path, len(data)) as handle:
        handle.write(data)
    return path


def atomic_copy_file(source: str | Path, path: str | Path, mode: int | None = None) -> Path:
    """Copy `source` to `path` whole or not at all, streamed (for files too big to hold in memory).

    For moving a file across filesystems, where a rename cannot. `mode`, when
    given, replaces the plain-open mode (0o666 & ~umask).
    """
    path = Path(path)
    with _replacing(path, _size_or_none(source)) as handle, open(source, "rb") as original:
        shutil.copyfileobj(original, handle, 1 << 20)
        if mode is not None:
            os.fchmod(handle.fileno(), mode)
    return path


@contextlib.contextmanager
def _replacing(path: Path, needed: int | None) -> Iterator[BinaryIO]:
    """A handle on a temporary beside `path` that replaces it, fsynced, when the block ends without error.

    On any error the temporary is removed and `path` stays as it was; a full disk names `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Outside the clean-up, so that the free space it reports is measured after the temporary is gone.
    with _naming_a_full_disk(path, needed):
        fd, tmp = _writer_temporary(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())  # with delayed allocation a full disk may show only here
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    fsync_directory(path.parent)


def _size_or_none(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Build a directory beside `target`, then swap it into place on success.

    On any exception the staging directory is removed and `target` (if it
    existed) is left exactly as it was; a full disk met while filling it (by
    any writer, say numpy's) is a DiskFullError naming `target`. A process
    killed outright (SIGKILL) leaves its staging directory behind; the next
    call removes such leftovers.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(target)
    staging = _new_staging_directory(target)
    try:
        yield staging
    except BaseException as exc:
        no_room = isinstance(exc, OSError) and exc.errno in _NO_ROOM
        # Measured before the removal: what was written is a lower bound on what the output needs.
        written = _tree_size(staging) if no_room else None
        shutil.rmtree(staging, ignore_errors=True)
        if no_room:
            size = f"{written:,} bytes were written before the disk filled" if written is not None else "size unknown"
            # Named after the target even when an inner atomic write named its file: that was in the staging.
            raise _disk_full_error(exc.errno, target, size, "directory") from exc
        raise
    replace_directory(staging, target)


def _tree_size(directory: Path) -> int | None:
    """The bytes of the files under `directory` (None if it cannot be read)."""
    try:
        return sum(entry.stat().st_size for entry in directory.rglob("*") if entry.is_file())
    except OSError:
        return None


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.staging-"


def _new_staging_directory(target: Path) -> Path:
    """A fresh `.NAME.staging-PID-RANDOM` beside `target` (fresh_directory)."""
    return fresh_directory(target.parent, f"{_staging_prefix(target)}{os.getpid()}-")


def fresh_directory(parent: Path, prefix: str) -> Path:
    """A new directory `parent/<prefix><random>`, with the mode a plain mkdir gives.

    mkdir with 0o777 lets the kernel apply the umask (and any default ACL) as it
    does for every other output; tempfile.mkdtemp would make it 0700, and others
    sharing a checkout could not read what is renamed into place from it.
    """
    while True:
        staging = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(staging, 0o777)
            return staging
        except FileExistsError:
            continue


def _writer_temporary(path: Path) -> tuple[int, str]:
    """Create `.NAME.PID@HOST.RANDOM.tmp` beside `path`, open for writing: (fd, its path).

    Opened with mode 0o666 so that the kernel applies the process umask (and any
    default ACL) exactly as for a plain open(). Reading the umask to compute the
    mode ourselves would need os.umask(), which sets it: for a moment every other
    thread would create world-writable files.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}@{_writer_host()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue


def _writer_host() -> str:
    """This host as a file-name-safe tag; on Linux with the pid namespace, since a pid means nothing outside it.

    Two containers can share a host name and a mounted cache, yet not see each
    other's processes: the namespace keeps one from deleting the other's temporaries.
    """
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
    with contextlib.suppress(OSError):
        host += "+" + str(os.stat("/proc/self/ns/pid").st_ino)
    return host


def remove_stale_temporaries(directory: Path, older_than_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Delete the atomic-write temporaries in `directory` whose writer is gone; return what was deleted.

    Removed: a temporary of this host whose process no longer exists. Also
    removed, but only when untouched for `older_than_s`: one whose pid is alive
    (it may have been reused), one of another host or pid namespace (its process
    cannot be checked from here), and one without a writer in its name (written
    before temporaries carried one). Nothing else in `directory` is touched, and
    a missing directory is not an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    here, now = _writer_host(), time.time()
    for candidate in directory.iterdir():
        if not (candidate.name.startswith(".") and candidate.name.endswith(".tmp")):
            continue
        try:
            info = candidate.lstat()
        except FileNotFoundError:  # its writer just renamed it into place
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        writer = _TEMPORARY.match(candidate.name)
        abandoned = (
            writer is not None and writer["host"] == here and not _process_alive(int(writer["pid"]))
        ) or now - info.st_mtime > older_than_s
        if abandoned:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


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
