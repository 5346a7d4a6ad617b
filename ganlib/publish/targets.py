"""Where a gallery goes: a local directory or any fsspec URL, with one layout and no half-written state.

Layout of a target (the same for both kinds):

    index.html                     the current release's page (links into releases/<id>/)
    manifest.json                  the current release: metadata, every file with its sha256, history
    releases/<id>/index.html       each release's own page (relative links), browsable after it is replaced
    releases/<id>/manifest.json    that release's files and checksums
    releases/<id>/grid.png, interpolation.png, samples/sample_0000.png, ...
    releases/<id>/generator.pt     the generator the release shows (sha256 in the manifest), which the
                                   better_fid gate re-scores; whoever can read the gallery can download it

`index.html` and `manifest.json` at the top are the pointer: a release is
published once they name it. How each kind keeps a failure harmless:

- Local directory: the whole new target (kept releases, the new release,
  the pointer) is built in a staging directory beside it and swapped in with
  two renames (`ganlib.io.atomic.staged_directory`). On any error the staging
  directory is removed and the target is untouched.
- fsspec URL (s3://bucket/prefix, gs://..., file:///abs/dir, memory://...):
  object stores have no atomic rename, so the new release is uploaded under
  its own fresh prefix, `releases/<id>/`, which nothing points at yet. Only
  when every file is there are the pointer files written: index.html first,
  manifest.json last (each as a temporary object moved into place, so a
  reader never sees a partial one). An error before that leaves the previous
  pointer, and so the previous gallery, exactly as it was; the partial
  release is removed (best effort) and, should that fail too, is pruned by
  the next successful publish. Releases beyond `publish.keep_releases` are
  deleted only after the pointer names the new one. If the process dies
  between the two pointer writes, index.html already shows the new, complete
  release while manifest.json still describes the previous one; the next
  publish compares with (and repairs) the manifest. One publisher per target
  at a time: nothing here locks a bucket.

Using S3: install the fsspec backend (`pip install s3fs`), give credentials
the usual AWS way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE,
or an instance role; AWS_ENDPOINT_URL for MinIO and other S3-compatible
stores), and set `publish.target: s3://my-bucket/scenegan/gallery`. To serve
it as a website, point the bucket's static-website hosting (or a CDN) at the
prefix: index.html and every image link are relative. Files are written with
fsspec's portable `pipe_file`, which sets no headers of its own: check once
that index.html is served as text/html (if the backend stored it as
application/octet-stream, browsers download it instead of showing it; set a
Content-Type rule on the bucket or CDN).

Only files this module recognises are ever deleted: release directories
whose names match RELEASE_ID_PATTERN. A target that exists, is not empty and
has no gallery manifest is refused rather than replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import fsspec

from ganlib.errors import UserFacingError
from ganlib.io.atomic import staged_directory
from ganlib.logs import Logger

GALLERY_FORMAT = "scenegan-gallery/1"
INDEX_FILE = "index.html"
MANIFEST_FILE = "manifest.json"
RELEASES_DIR = "releases"
# UTC time first, so that names sort by publication time; the random suffix
# keeps two publishes within one second apart.
RELEASE_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


class PublishTargetError(UserFacingError, RuntimeError):
    """The publish target cannot be used; the message names it and says what to do."""


def new_release_id(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PublishedGallery:
    """The gallery a target currently points at: its top-level manifest."""

    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def release(self) -> str:
        return str(self.manifest["release"])

    @property
    def fid(self) -> float | None:
        return self.manifest.get("fid")


class GalleryUpload:
    """Collects one release's files as they are written, with their checksums.

    `add` writes a file of the release at once; `set_pointer` only records a
    top-level file, which the target writes after everything else succeeded.
    """

    def __init__(self, release_id: str, write: Callable[[str, bytes], None]) -> None:
        self.release_id = release_id
        self.checksums: dict[str, str] = {}        # path relative to the target -> sha256
        self.pointers: list[tuple[str, bytes]] = []
        self._write = write

    @property
    def prefix(self) -> str:
        return f"{RELEASES_DIR}/{self.release_id}/"

    def add(self, name: str, data: bytes) -> str:
        """Write `name` (relative to the release directory); returns its path relative to the target."""
        path = self.prefix + name
        self._write(path, data)
        self.checksums[path] = sha256_hex(data)
        return path

    def set_pointer(self, name: str, data: bytes) -> None:
        self.checksums[name] = sha256_hex(data)
        self.pointers.append((name, data))


class GalleryTarget(ABC):
    location: str

    @abstractmethod
    def read_file(self, relative: str) -> bytes | None:
        """A file of the target, or None when it does not exist."""

    def release_file(self, release: str, name: str) -> bytes | None:
        """A file of one release (`name` relative to its directory), or None when it does not exist."""
        if not RELEASE_ID_PATTERN.match(release):
            raise PublishTargetError(f"{self.location}: {release!r} is not a release id")
        return self.read_file(f"{RELEASES_DIR}/{release}/{name}")

    @abstractmethod
    def release_ids(self) -> list[str]:
        """The release directories present, oldest first."""

    @abstractmethod
    def _holds_anything(self) -> bool: ...

    @abstractmethod
    def publish(self, release_id: str, keep: Collection[str], log: Logger) -> contextlib.AbstractContextManager[GalleryUpload]:
        """Context for writing one release; the pointer is written only if the block succeeds.

        Releases not in `keep` (and not the new one) are removed once the new
        release is published.
        """

    def current(self) -> PublishedGallery | None:
        """The published gallery, None for an empty or missing target; refuses anything else."""
        data = self.read_file(MANIFEST_FILE)
        if data is None:
            if self._holds_anything():
                raise PublishTargetError(
                    f"publish.target {self.location}: exists and is not empty, but has no {MANIFEST_FILE}, so it is "
                    "not a scenegan gallery; refusing to replace it. Choose an empty or new location."
                )
            return None
        try:
            manifest = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PublishTargetError(
                f"{self.location}/{MANIFEST_FILE}: not valid JSON ({exc}); "
                "restore it or delete the gallery to publish afresh"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != GALLERY_FORMAT or "release" not in manifest:
            raise PublishTargetError(
                f"{self.location}/{MANIFEST_FILE}: not a {GALLERY_FORMAT} manifest; refusing to replace "
                "what is there. Choose another publish.target or remove that directory."
            )
        fid = manifest.get("fid")
        if fid is not None and not isinstance(fid, (int, float)):
            raise PublishTargetError(f"{self.location}/{MANIFEST_FILE}: fid is {fid!r}, expected a number or null")
        return PublishedGallery(manifest=manifest, manifest_sha256=sha256_hex(data))


def open_target(target: str, root: Path) -> GalleryTarget:
    """`publish.target` as a target: a URL with a scheme goes to fsspec, anything else is a local path."""
    if "://" in target:
        return FsspecGalleryTarget(target)
    return LocalGalleryTarget(root / target)


class LocalGalleryTarget(GalleryTarget):
    def __init__(self, directory: Path) -> None:
        # Resolved, so that a symlinked web root gets its contents replaced
        # rather than the link itself swapped for a directory.
        self.directory = Path(directory).resolve()
        self.location = str(self.directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise PublishTargetError(f"publish.target {self.location}: is a file, not a directory")

    def read_file(self, relative: str) -> bytes | None:
        path = self.directory / relative
        return path.read_bytes() if path.is_file() else None

    def release_ids(self) -> list[str]:
        releases = self.directory / RELEASES_DIR
        if not releases.is_dir():
            return []
        return sorted(p.name for p in releases.iterdir() if p.is_dir() and RELEASE_ID_PATTERN.match(p.name))

    def _holds_anything(self) -> bool:
        return self.directory.is_dir() and any(self.directory.iterdir())

    @contextlib.contextmanager
    def publish(self, release_id: str, keep: Collection[str], log: Logger) -> Iterator[GalleryUpload]:
        with staged_directory(self.directory) as staging:
            if self.directory.is_dir():
                self._copy_kept(staging, keep)
            upload = GalleryUpload(release_id, lambda relative, data: _write_local(staging / relative, data))
            yield upload
            for name, data in upload.pointers:
                _write_local(staging / name, data)

    def _copy_kept(self, staging: Path, keep: Collection[str]) -> None:
        """Copy the current target into `staging`, minus the releases that are not kept."""
        releases = self.directory / RELEASES_DIR

        def dropped(directory: str, names: list[str]) -> set[str]:
            if Path(directory) != releases:
                return set()
            return {name for name in names if RELEASE_ID_PATTERN.match(name) and name not in keep}

        shutil.copytree(self.directory, staging, ignore=dropped, dirs_exist_ok=True)


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class FsspecGalleryTarget(GalleryTarget):
    def __init__(self, url: str) -> None:
        self.location = url.rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except ImportError as exc:
            raise PublishTargetError(
                f"publish.target {url}: the fsspec backend for this scheme is not installed ({exc}); "
                "install it (e.g. `pip install s3fs` for s3://) or publish to a local directory"
            ) from None
        except ValueError as exc:
            raise PublishTargetError(f"publish.target {url}: not a usable fsspec URL ({exc})") from None
        self.root = root.rstrip("/")
        if self.fs.isfile(self.root):
            raise PublishTargetError(f"publish.target {url}: is a file, not a directory/prefix")

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def read_file(self, relative: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(relative))
        except FileNotFoundError:
            return None

    def release_ids(self) -> list[str]:
        try:
            entries = self.fs.ls(self._path(RELEASES_DIR), detail=False)
        except FileNotFoundError:
            return []
        names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return sorted(name for name in names if RELEASE_ID_PATTERN.match(name))

    def _holds_anything(self) -> bool:
        try:
            return bool(self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def publish(self, release_id: str, keep: Collection[str], log: Logger) -> Iterator[GalleryUpload]:
        upload = GalleryUpload(release_id, self._write)
        try:
            yield upload
        except BaseException:
            self._remove_quietly(upload.prefix, log)
            raise
        for name, data in upload.pointers:
            self._write_replacing(name, data)
        self._prune(set(keep) | {release_id}, log)

    def _write(self, relative: str, data: bytes) -> None:
        path = self._path(relative)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def _write_replacing(self, relative: str, data: bytes) -> None:
        # A move of a complete temporary object: a rename on local disks, one
        # server-side copy on object stores; readers see the old or the new file.
        temporary = f".{relative}.{secrets.token_hex(4)}.tmp"
        self._write(temporary, data)
        self.fs.mv(self._path(temporary), self._path(relative))

    def _prune(self, keep: set[str], log: Logger) -> None:
        for release in self.release_ids():
            if release not in keep:
                self._remove_quietly(f"{RELEASES_DIR}/{release}/", log)

    def _remove_quietly(self, relative: str, log: Logger) -> None:
        # Only ever called on a release directory: the pointer no longer (or
        # never) names it, so failing to remove it costs space, not correctness.
        path = self._path(relative.rstrip("/"))
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except Exception as exc:  # noqa: BLE001 - any backend error; logged, never fatal
            log.warning("could not remove %s/%s (%s); the next publish prunes it", self.location, relative, exc)
