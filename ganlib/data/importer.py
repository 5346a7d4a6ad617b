"""`scenegan data import SRC`: bring a user's photos into the raw dataset directory.

SRC is a folder (nested) or an archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2,
.tar.xz). Decisions, so that an import can never damage what is there:

- Only files with an image extension (IMAGE_SUFFIXES) are imported; anything
  else (README.txt, .json annotations, Thumbs.db) is skipped and reported, so
  that data/raw - and the DVC cache - hold photos only. The one exception is
  a labels file (labels.csv or dataset.json, ganlib/data/labels.py) at SRC's
  top level: it gives the images their classes. Hidden names
  (dot-files, dot-directories, __MACOSX) are skipped and counted.
- Relative names are kept: `trips/2021/a.jpg` in SRC becomes
  `DEST/trips/2021/a.jpg`.
- Nothing is written outside DEST: archive members with absolute paths or
  `..` components, symlinks, hard links and device files are skipped and
  reported (never extracted), archives are never handed to extractall(), and
  a DEST path that leads outside DEST through an existing symlink is refused.
- Archive bombs are an error, caught on the bytes actually produced (an
  archive's declared sizes can lie) before they fill the disk: a member that
  expands more than `max_ratio` times its compressed size (default 200:1;
  photos barely compress, while deflate turns zeros into about 1030:1), an
  archive that expands more than `max_ratio` times its own size (many small
  members), and more than `max_total_bytes` in all. Ratios are judged only
  beyond RATIO_FREE_BYTES, where headers and read-ahead no longer distort
  them. The total cap is also sized to the destination disk's free space,
  less DISK_RESERVE_BYTES, so an import never fills the disk.
- New folders get the mode any folder the user makes gets (the umask
  applies), so that others sharing a checkout can read data/raw.
- All or nothing: everything is staged beside DEST first; if any staged file
  would replace an existing DEST file with different content, the import
  stops with an error listing them and DEST is left untouched. Identical
  files already in DEST are counted as already present.
- A DEST that already holds files is never mixed into silently: the caller
  says ADD (merge, as above) or REPLACE (the staged import takes DEST's
  place in two renames once it is complete; the old files are deleted only
  after that, so a failed import leaves them as they were). Without either,
  DestinationNotEmptyError. `replaced_version` says whether DVC can bring the
  replaced files back, and how.
"""

from __future__ import annotations

import io
import json
import lzma
import math
import os
import re
import shutil
import stat
import subprocess
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

import yaml

from ganlib.data.images import IMAGE_SUFFIXES
from ganlib.data.labels import LABEL_FILES
from ganlib.errors import UserFacingError
from ganlib.io.atomic import fresh_directory
from ganlib.io.provenance import dataset_dvc_file, dataset_md5, short_md5
from ganlib.logs import Logger
from ganlib.progress import Progress

DEFAULT_MAX_TOTAL_BYTES = 64 * 2**30  # far above any photo collection one imports by hand
# JPEG/PNG photos do not compress further (about 1:1), an uncompressed BMP/TIFF
# photo compresses about 2-4:1, deflate on zeros reaches about 1030:1.
DEFAULT_MAX_RATIO = 200.0
RATIO_FREE_BYTES = 1 << 20     # below this a member's (or archive's) expansion is never judged by its ratio
DISK_RESERVE_BYTES = 512 << 20  # an import leaves this much of its disk free (the machine must keep working)
SKIPS_LOGGED = 20
_COPY_BLOCK = 1 << 20
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")

# Skip reasons.
NOT_AN_IMAGE_NAME = "not an image file extension"
UNSAFE_PATH = "unsafe path (absolute or '..'): not extracted"
SYMLINK = "symlink: not followed"
HARD_LINK = "hard link: not extracted"
SPECIAL_FILE = "device, FIFO or other special file: not extracted"
DUPLICATE_NAME = "same name as an earlier member (first kept)"
PATH_CLASH = "path clashes with another member (a file where a folder is needed)"

_SIZE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30, "t": 2**40, "tib": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}


# What to do with a destination that already holds files.
NEW = "new"          # it must be empty (or missing)
ADD = "add"          # merge into it
REPLACE = "replace"  # the import takes its place
EXISTING_MODES = (NEW, ADD, REPLACE)


class DatasetImportError(UserFacingError, ValueError):
    """The import cannot proceed; DEST is unchanged. The message says what to fix."""


class DestinationNotEmptyError(DatasetImportError):
    """DEST holds files and the caller said neither ADD nor REPLACE; nothing was read or written."""


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class ImportSummary:
    source: Path
    dest: Path
    imported: tuple[str, ...]         # relative names newly written to dest
    already_present: tuple[str, ...]  # identical files that dest already had
    skipped: tuple[Skipped, ...]
    hidden_skipped: int
    total_bytes: int                  # bytes of image files read from the source
    existing: str = NEW               # NEW, ADD or REPLACE: what was asked for a non-empty dest
    files_before: int = 0             # files dest held before the import (all kinds, hidden included)
    files_after: int = 0              # files dest holds after it


@dataclass(frozen=True)
class ReplacedVersion:
    """The dataset version a --replace import removes, and whether (and how) DVC can bring it back."""

    md5: str | None          # DVC's md5 of the folder; None: no .dvc file tracks it
    dvc_file: str | None     # the .dvc file that records it (relative to the project root)
    in_cache: bool           # every file of that version is in the local DVC cache
    commit: str | None       # a git commit whose dvc_file records this md5 (None: not committed)
    restore: str | None      # the command that brings it back; None when nothing can
    restore_note: str = ""   # when that command stops working (an uncommitted .dvc file)

    @property
    def short(self) -> str:
        return short_md5(self.md5)


@dataclass(frozen=True)
class ByteCap:
    """How many bytes an import may write, and what set the bound (for the error message)."""

    limit: int
    by_disk: bool   # True: the destination disk's free space (less the reserve), not max_total_bytes
    free: int       # free bytes on the destination disk when the import started


def import_dataset(
    src: Path, dest: Path, log: Logger, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO, existing: str = NEW,
) -> ImportSummary:
    """Copy the image files of folder or archive `src` into `dest` (see module docstring).

    `existing`: NEW (dest must hold no files), ADD (merge) or REPLACE (swap the import in).
    """
    src, dest = Path(src), Path(dest)
    if not (math.isfinite(max_ratio) and max_ratio >= 1):
        raise DatasetImportError(f"max_ratio must be a finite number >= 1, got {max_ratio}")
    if existing not in EXISTING_MODES:
        raise ValueError(f"existing must be one of {EXISTING_MODES}, got {existing!r}")
    stage_source = _source_reader(src, dest)
    files_before = count_files(dest)
    if files_before and existing == NEW:
        raise DestinationNotEmptyError(
            f"{dest} already holds {files_before} file(s); nothing was imported. Say what to do with them: "
            "--add merges the new photos into them (identical files are kept once, a different file under "
            "the same name is an error); --replace puts the import in their place once it has fully "
            "succeeded (the summary names the dataset version it replaces and how DVC brings it back)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    cap = byte_cap(max_total_bytes, dest.parent)
    if cap.limit <= 0:
        raise DatasetImportError(
            f"{dest.parent}: only {cap.free} bytes free, and an import leaves {DISK_RESERVE_BYTES} free; "
            "free some space, or import onto another disk with --out. Nothing was imported"
        )
    staging = _new_staging_directory(dest)
    try:
        stager = _Stager(staging, cap, max_ratio, log, str(src))
        log.info("import: reading %s", src)
        stage_source(src, stager)
        if all(name in LABEL_FILES for name in stager.names):  # a labels file alone is no dataset
            reasons = _skip_reason_counts(stager.skipped)
            raise DatasetImportError(
                f"{src}: no image files to import ({stager.hidden} hidden skipped; {reasons or 'nothing else found'}); "
                f"image files are recognised by extension: {' '.join(sorted(IMAGE_SUFFIXES))}"
            )
        if existing == REPLACE and files_before:
            imported, present = sorted(stager.names), []
            _swap_in(staging, dest)
        else:
            imported, present = _merge_into(staging, sorted(stager.names), dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    summary = ImportSummary(
        source=src, dest=dest, imported=tuple(imported), already_present=tuple(present),
        skipped=tuple(sorted(stager.skipped, key=lambda s: s.name)), hidden_skipped=stager.hidden,
        total_bytes=stager.bytes, existing=existing, files_before=files_before, files_after=count_files(dest),
    )
    log.info(
        "import (%s): %d files before, %d new files in %s, %d already present, %d skipped (%s), "
        "%d hidden skipped, %.1f MB read",
        existing, files_before, len(imported), dest, len(present), len(summary.skipped),
        _skip_reason_counts(summary.skipped) or "none", stager.hidden, stager.bytes / 1e6,
    )
    for skipped in summary.skipped[:SKIPS_LOGGED]:
        log.info("import: skipped %s: %s", skipped.name, skipped.reason)
    if len(summary.skipped) > SKIPS_LOGGED:
        log.info("import: ... and %d more skipped (ImportSummary.skipped lists them all)", len(summary.skipped) - SKIPS_LOGGED)
    return summary


def count_files(folder: Path) -> int:
    """Files (not folders) anywhere under `folder`, hidden ones included; 0 for a missing folder.

    Symlinks count as files: a folder that holds only links is not empty.
    """
    if not folder.is_dir():
        return 0
    return sum(len(filenames) + sum(1 for d in dirnames if (Path(dirpath) / d).is_symlink())
               for dirpath, dirnames, filenames in os.walk(folder))


def replaced_version(root: Path, dest: Path) -> ReplacedVersion:
    """What DVC knows of the dataset in `dest` (inside project `root`): call it before a REPLACE import.

    The md5 comes from the .dvc file that tracks `dest` (data.dvc, or `<dest>.dvc`).
    It is recoverable when the local DVC cache holds every file of it; the
    restore command checks out a committed .dvc file when git has one that
    names this md5 (it survives a later `dvc add`), else the current one
    (valid only until `dvc add` rewrites it, and forced: DVC keeps files it
    has not cached unless told).
    """
    root, dest = Path(root), Path(dest)
    md5 = dataset_md5(root, dest)
    dvc_file = dataset_dvc_file(root, dest) if md5 else None
    if md5 is None or dvc_file is None:
        return ReplacedVersion(None, None, False, None, None)
    dvc_rel = os.path.relpath(dvc_file, root)
    dest_rel = os.path.relpath(dest, root)
    in_cache = _cached(root, md5)
    commit = _commit_recording(root, dvc_rel, md5)
    if not in_cache:
        return ReplacedVersion(md5, dvc_rel, False, commit, None)
    if commit:
        return ReplacedVersion(md5, dvc_rel, True, commit, f"git checkout {commit} -- {dvc_rel} && dvc checkout {dest_rel}")
    # DVC refuses to drop files it has not cached (the import, before `dvc add`): --force says to.
    return ReplacedVersion(md5, dvc_rel, True, None, f"dvc checkout --force {dest_rel}",
                           f"discards the imported files; {dvc_rel} is not committed, so this works only "
                           f"until `dvc add` rewrites it: commit or copy {dvc_rel} first to keep this version")


def _cached(root: Path, md5: str) -> bool:
    """True if the local DVC cache (DVC 3 layout, `files/md5/`, or DVC 2) holds the folder and all its files."""
    for base in (root / ".dvc" / "cache" / "files" / "md5", root / ".dvc" / "cache"):
        manifest = base / md5[:2] / f"{md5[2:]}.dir"
        if manifest.is_file():
            try:
                entries = json.loads(manifest.read_text())
            except ValueError:
                return False
            return all((base / e["md5"][:2] / e["md5"][2:]).is_file() for e in entries)
    return False


def _commit_recording(root: Path, dvc_rel: str, md5: str) -> str | None:
    """HEAD (short) when its committed `dvc_rel` records `md5`; None otherwise (no git, not committed, changed)."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:{dvc_rel}"], cwd=root, capture_output=True, text=True,
                               check=False)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=False)
    except OSError:  # no git on this machine
        return None
    if shown.returncode != 0 or head.returncode != 0:
        return None
    try:
        outs = (yaml.safe_load(shown.stdout) or {}).get("outs") or []
    except (yaml.YAMLError, AttributeError):
        return None
    if not any(isinstance(out, dict) and str(out.get("md5", "")).removesuffix(".dir") == md5 for out in outs):
        return None
    return head.stdout.strip() or None


def byte_cap(max_total_bytes: int, directory: Path) -> ByteCap:
    """`max_total_bytes`, or less: what fits on `directory`'s disk leaving DISK_RESERVE_BYTES free.

    Staging and destination share that disk (the staged files are renamed
    into place), so the import needs the room once.
    """
    free = shutil.disk_usage(directory).free
    room = free - DISK_RESERVE_BYTES
    if room < max_total_bytes:
        return ByteCap(max(room, 0), by_disk=True, free=free)
    return ByteCap(max_total_bytes, by_disk=False, free=free)


def parse_byte_size(text: str) -> int:
    """"5000", "500M", "64G", "1.5GiB" (K/M/G/T and KiB... are powers of 1024), "2GB" (kB/MB/GB/TB: of 1000)."""
    match = _SIZE_TEXT.match(text.lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G, T (or kB, MB, GB, TB)")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size < 1:
        raise ValueError(f"{text!r}: the size must be at least 1 byte")
    return size


def safe_member_name(name: str) -> PurePosixPath | None:
    """An archive member name as a relative path that stays inside its target, or None.

    Backslashes count as separators: archives made on Windows use them, and
    `..\\x` must not survive as a name that means `../x` somewhere else.
    """
    if not name or "\x00" in name:
        return None
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        return None
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _source_reader(src: Path, dest: Path) -> Callable[[Path, _Stager], None]:
    """The function that stages `src`, or a clear error for a source we cannot read."""
    if not src.exists():
        raise DatasetImportError(f"{src}: not found; give a folder or a .zip/.tar archive of photos")
    if src.is_dir():
        real_src, real_dest = Path(os.path.realpath(src)), Path(os.path.realpath(dest))
        if real_dest.is_relative_to(real_src) or real_src.is_relative_to(real_dest):
            raise DatasetImportError(
                f"{src}: the source folder and the destination {dest} contain one another; "
                "import from a folder outside the dataset"
            )
        return _stage_folder
    if zipfile.is_zipfile(src):
        return _stage_zip
    if tarfile.is_tarfile(src):
        return _stage_tar
    raise DatasetImportError(f"{src}: not a folder, .zip or .tar(.gz/.bz2/.xz) archive")


class _Stager:
    """Writes accepted members into the staging directory and keeps the books."""

    def __init__(self, staging: Path, cap: ByteCap, max_ratio: float, log: Logger, source: str) -> None:
        self.staging = staging
        self.names: list[str] = []
        self.skipped: list[Skipped] = []
        self.hidden = 0
        self.bytes = 0
        self._cap, self._max_ratio = cap, max_ratio
        self._archive_bytes: int | None = None  # the archive's size on disk; None for a folder (nothing expands)
        self._log, self._source = log, source
        self._progress: Progress | None = None

    def expanding(self, archive_bytes: int) -> None:
        """What follows comes out of an archive of `archive_bytes`: judge the expansion ratios."""
        self._archive_bytes = archive_bytes

    def copying(self, total: int | None) -> Progress:
        """The progress of the copies that follow (`with stager.copying(n): ...`); total None when unknown."""
        self._progress = Progress(self._log, total, "import", "files")
        return self._progress

    def accepts(self, name: PurePosixPath) -> bool:
        """False (and the books updated) for hidden names and non-image extensions."""
        if any(_is_hidden(part) for part in name.parts):
            self.hidden += 1
            return False
        if len(name.parts) == 1 and name.name in LABEL_FILES:
            return True  # the classes of the images (ganlib/data/labels.py): read from the top level only
        if name.suffix.lower() not in IMAGE_SUFFIXES:
            self.skip(str(name), NOT_AN_IMAGE_NAME)
            return False
        return True

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append(Skipped(name, reason))

    def write(self, name: PurePosixPath, stream: BinaryIO, compressed: Callable[[], int] | None = None) -> None:
        """Copy `stream` to the staged `name`; `compressed()`: the archive bytes read for it so far (ratio check)."""
        if self._progress is not None:
            self._progress.advance()  # counted before the copy: a member skipped below is done too
        target = self.staging.joinpath(*name.parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            self.skip(str(name), PATH_CLASH)
            return
        try:
            handle = open(target, "xb")  # never replaces: a repeated name is reported
        except FileExistsError:
            self.skip(str(name), PATH_CLASH if target.is_dir() else DUPLICATE_NAME)
            return
        member_bytes = 0
        with handle:
            for block in iter(lambda: stream.read(_COPY_BLOCK), b""):
                member_bytes += len(block)
                self._spend(len(block), name)
                if compressed is not None:
                    self.check_member_ratio(name, member_bytes, compressed())
                handle.write(block)
        self.names.append(str(name))

    def check_declared_size(self, declared: int) -> None:
        """Fail fast on what an archive says it holds (the streamed count below is what counts)."""
        if declared > self._cap.limit:
            raise self._too_big(f"declares {declared} bytes")

    def check_declared_ratio(self, declared: int) -> None:
        self._check_archive_ratio(declared, "declares")

    def check_member_ratio(self, name: PurePosixPath, expanded: int, compressed: int) -> None:
        """A bomb error if member `name` expands more than max_ratio times its compressed bytes."""
        if expanded > RATIO_FREE_BYTES and expanded > self._max_ratio * compressed:
            raise self._bomb(f"member {name} expands to {expanded} bytes from {compressed}", expanded, compressed)

    def _spend(self, n_bytes: int, name: PurePosixPath) -> None:
        # Counted on the bytes actually produced: an archive's declared sizes can lie.
        self.bytes += n_bytes
        if self.bytes > self._cap.limit:
            raise self._too_big(f"expands past the limit at member {name}")
        self._check_archive_ratio(self.bytes, f"has expanded (at member {name})")

    def _check_archive_ratio(self, expanded: int, what: str) -> None:
        # Many members, each too small to judge alone, still cannot add up to more than the bound allows.
        archive = self._archive_bytes
        if archive is not None and expanded > RATIO_FREE_BYTES and expanded > self._max_ratio * archive:
            raise self._bomb(f"{what} {expanded} bytes from an archive of {archive}", expanded, archive)

    def _bomb(self, what: str, expanded: int, compressed: int) -> DatasetImportError:
        ratio = expanded / max(compressed, 1)
        return DatasetImportError(
            f"{self._source}: {what} ({ratio:.0f}:1, more than max_ratio={self._max_ratio:g}): an archive bomb, "
            "or a file that compresses unusually well. Nothing was imported; if the archive is genuine, "
            "raise the bound with `scenegan data import --max-ratio N`"
        )

    def _too_big(self, what: str) -> DatasetImportError:
        cap = self._cap
        if cap.by_disk:
            return DatasetImportError(
                f"{self._source}: {what}, more than the {cap.limit} bytes that fit on the destination's disk "
                f"({cap.free} free, {DISK_RESERVE_BYTES} kept free). Nothing was imported; free some space, "
                "or import onto another disk with --out"
            )
        return DatasetImportError(
            f"{self._source}: {what}, more than max_total_bytes={cap.limit} (a zip bomb, or a larger "
            "dataset than expected). Nothing was imported; if the archive is genuine, raise the cap with "
            "`scenegan data import --max-bytes SIZE`"
        )


def _stage_folder(src: Path, stager: _Stager) -> None:
    # Walk first, copy second: the walk is cheap next to the copies, and
    # gives the progress its total.
    to_copy: list[tuple[Path, PurePosixPath]] = []
    for dirpath, dirnames, filenames in os.walk(src):
        directory = Path(dirpath)
        rel_dir = PurePosixPath(directory.relative_to(src).as_posix())
        walk_next = []
        for dirname in sorted(dirnames):
            if _is_hidden(dirname):
                stager.hidden += 1  # counted once, not walked
            elif (directory / dirname).is_symlink():
                stager.skip(str(rel_dir / dirname), SYMLINK)
            else:
                walk_next.append(dirname)
        dirnames[:] = walk_next
        for filename in sorted(filenames):
            path, name = directory / filename, rel_dir / filename
            if not stager.accepts(name):
                continue
            if path.is_symlink():
                stager.skip(str(name), SYMLINK)
            elif not stat.S_ISREG(path.lstat().st_mode):
                stager.skip(str(name), SPECIAL_FILE)
            else:
                to_copy.append((path, name))
    with stager.copying(len(to_copy)):
        for path, name in to_copy:
            with open(path, "rb") as stream:
                stager.write(name, stream)


def _stage_zip(src: Path, stager: _Stager) -> None:
    try:
        with zipfile.ZipFile(src) as archive:
            stager.expanding(src.stat().st_size)
            to_copy: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = safe_member_name(info.filename)
                # The Unix file type, when the archiver recorded one (0 = unknown: a plain file).
                kind = stat.S_IFMT(info.external_attr >> 16)
                if name is None:
                    stager.skip(info.filename, UNSAFE_PATH)
                elif kind == stat.S_IFLNK:
                    stager.skip(info.filename, SYMLINK)
                elif kind not in (0, stat.S_IFREG):
                    stager.skip(info.filename, SPECIAL_FILE)
                elif stager.accepts(name):
                    to_copy.append((info, name))
            # What the archive declares is judged before anything is written (the copies count again).
            declared = sum(info.file_size for info, _ in to_copy)
            stager.check_declared_size(declared)
            for info, name in to_copy:
                stager.check_member_ratio(name, info.file_size, info.compress_size)
            stager.check_declared_ratio(declared)
            with stager.copying(len(to_copy)):
                for info, name in to_copy:
                    with archive.open(info) as stream:
                        # zipfile reads at most compress_size bytes for a member, whatever it expands to.
                        stager.write(name, stream, compressed=lambda size=info.compress_size: size)
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, zlib.error) as exc:
        # RuntimeError: an encrypted member. OSError includes a full disk, hence the exception text.
        raise DatasetImportError(
            f"{src}: cannot import this zip archive ({type(exc).__name__}: {exc}); nothing was imported"
        ) from None


def _stage_tar(src: Path, stager: _Stager) -> None:
    try:
        # A tar archive is read as a stream, in one pass: how many members it
        # holds is not known until the end, so the progress has no total.
        # Opened here so that the compressed bytes read so far (raw.tell()) judge each member's ratio.
        with _ArchiveFile(src) as raw, tarfile.open(fileobj=raw, mode="r:*") as archive, stager.copying(None):
            stager.expanding(os.fstat(raw.fileno()).st_size)
            for member in archive:  # streams: members are read in archive order
                if member.isdir():
                    continue
                name = safe_member_name(member.name)
                if name is None:
                    stager.skip(member.name, UNSAFE_PATH)
                elif member.issym():
                    stager.skip(member.name, SYMLINK)
                elif member.islnk():
                    stager.skip(member.name, HARD_LINK)
                elif not member.isreg():
                    stager.skip(member.name, SPECIAL_FILE)
                elif stager.accepts(name):
                    stream = archive.extractfile(member)
                    assert stream is not None  # regular members always have data
                    start = raw.tell()
                    with stream:
                        stager.write(name, stream, compressed=lambda start=start: raw.compressed_since(start))
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise DatasetImportError(
            f"{src}: cannot import this tar archive ({type(exc).__name__}: {exc}); nothing was imported"
        ) from None


class _ArchiveFile(io.FileIO):
    """A compressed tar archive's file, which can say how many of its bytes a member used.

    The decompressor reads ahead, so part of a member's compressed bytes may
    have been read before the member started: up to one read in its input
    and one buffered. A member is credited with two of the largest reads on
    top of what was read while it was copied, so a highly compressible
    member is never refused for the read-ahead (its size varies with the
    Python version: 8 KiB or 128 KiB for gzip).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "r")
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.largest_read = max(self.largest_read, len(data) if data else 0)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = super().readinto(buffer)
        self.largest_read = max(self.largest_read, count or 0)
        return count

    def compressed_since(self, start: int) -> int:
        """Archive bytes that can belong to what was decompressed since position `start`."""
        return self.tell() - start + 2 * self.largest_read


def _merge_into(staging: Path, names: list[str], dest: Path) -> tuple[list[str], list[str]]:
    """Move staged files into dest; refuse (changing nothing) if any would clash."""
    real_dest = Path(os.path.realpath(dest))
    new, present, clashes = [], [], []
    for name in names:
        staged, target = staging / name, dest / name
        if not Path(os.path.realpath(target)).is_relative_to(real_dest) or _blocked_by_file(dest, name):
            clashes.append(f"{name} (a folder on its path in {dest} is a file or a symlink)")
        elif target.is_symlink() or target.exists():
            if target.is_file() and not target.is_symlink() and _same_bytes(staged, target):
                present.append(name)
            else:
                clashes.append(f"{name} (exists with different content)")
        else:
            new.append(name)
    if clashes:
        shown = "; ".join(clashes[:10]) + (f"; and {len(clashes) - 10} more" if len(clashes) > 10 else "")
        raise DatasetImportError(
            f"import into {dest} would overwrite {len(clashes)} file(s): {shown}. Nothing was imported; "
            "rename or remove those files (in the source or in the destination) and import again"
        )
    if not dest.exists():
        os.replace(staging, dest)  # a fresh destination appears in one rename
        return new, present
    for name in new:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    return new, present


def _swap_in(staging: Path, dest: Path) -> None:
    """Put the complete `staging` in `dest`'s place; the old `dest` is deleted only once the new one is there.

    Two renames on one disk: dest -> an empty `.NAME.replaced-RANDOM` beside it
    (rename may replace an empty folder), staging -> dest. If the second
    fails, the first is undone, so the old files are never lost.
    """
    old = fresh_directory(dest.parent, f".{dest.name}.replaced-")
    os.replace(dest, old)
    try:
        os.replace(staging, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old)


def _new_staging_directory(dest: Path) -> Path:
    """A fresh `.NAME.import-RANDOM` beside `dest` whose mode follows the umask: a fresh `dest` is this
    very folder renamed, and others sharing the checkout must be able to read data/raw."""
    return fresh_directory(dest.parent, f".{dest.name}.import-")


def _is_hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _blocked_by_file(dest: Path, name: str) -> bool:
    """True if some existing ancestor of dest/name (below dest) is not a real directory."""
    node = dest
    for part in PurePosixPath(name).parts[:-1]:
        node = node / part
        if node.is_symlink() or (node.exists() and not node.is_dir()):
            return True
        if not node.exists():
            return False
    return False


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block_a, block_b = fa.read(_COPY_BLOCK), fb.read(_COPY_BLOCK)
            if block_a != block_b:
                return False
            if not block_a:
                return True


def _skip_reason_counts(skipped: list[Skipped] | tuple[Skipped, ...]) -> str:
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
