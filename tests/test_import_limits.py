"""`scenegan data import` limits: archive bombs refused by ratio, the byte cap sized to the disk, folder modes.

The bombs are generated here: zeros compress about 1000:1, so 64 MiB of
expansion costs well under a megabyte of disk, and each is refused after at
most a few MiB have been written.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, run
from PIL import Image

from ganlib.data import importer
from ganlib.data.importer import ADD, DatasetImportError, import_dataset, parse_byte_size
from ganlib.logs import plain_logger

LOG = plain_logger("test_import_limits")
SCENEGAN = str(Path(sys.executable).with_name("scenegan"))
BOMB_BYTES = 64 << 20


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def zeros(total: int, block: int = 1 << 20):
    while total > 0:
        yield b"\0" * min(block, total)
        total -= block


def zip_of_zeros(path: Path, members: dict[str, int]) -> Path:
    """A zip whose members are runs of zeros (name -> size), streamed: never held in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("good.png", png_bytes())
        for name, size in members.items():
            with archive.open(name, "w") as member:
                for chunk in zeros(size):
                    member.write(chunk)
    return path


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def tar_gz_of_zeros(path: Path, members: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=9) as archive:
        for name, size in members.items():
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, _ZeroReader(size))
    return path


class _ZeroReader(io.RawIOBase):
    """`size` zero bytes as a file, without a buffer of that size."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"\0" * n
        self.left -= n
        return n


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A destination that already holds one photo (an import must leave it exactly so)."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "kept.png").write_bytes(png_bytes())
    return raw


def assert_untouched(dest: Path) -> None:
    """dest as the fixture made it, and nothing half-imported beside it (no staging folder)."""
    assert [p.name for p in dest.rglob("*")] == ["kept.png"]
    assert [p.name for p in dest.parent.iterdir()] == ["raw"]


def test_a_zip_bomb_member_is_refused_by_its_ratio_before_anything_is_written(tmp_path: Path, dest: Path) -> None:
    bomb = zip_of_zeros(tmp_path / "bomb.zip", {"scan.bmp": BOMB_BYTES})
    assert bomb.stat().st_size < BOMB_BYTES / 500  # about 1000:1, far below the 64 GiB cap
    with pytest.raises(DatasetImportError) as error:
        import_dataset(bomb, dest, LOG, existing=ADD)
    message = str(error.value)
    assert "member scan.bmp expands to 67108864 bytes" in message and "max_ratio=200" in message
    assert "Nothing was imported" in message and "--max-ratio" in message
    assert_untouched(dest)


def test_a_tar_gz_bomb_is_refused_while_streaming_after_a_few_mib(tmp_path: Path, dest: Path) -> None:
    bomb = tar_gz_of_zeros(tmp_path / "bomb.tar.gz", {"ok.png": 1000, "scan.bmp": BOMB_BYTES})
    with pytest.raises(DatasetImportError, match=r"scan\.bmp.*more than max_ratio=200") as error:
        import_dataset(bomb, dest, LOG, existing=ADD)
    written = int(re.search(r"(\d+) bytes from", str(error.value)).group(1))
    assert written <= BOMB_BYTES // 4  # stopped long before the 64 MiB it would become
    assert_untouched(dest)


def test_compressible_photos_in_a_tar_gz_are_not_mistaken_for_a_bomb(tmp_path: Path, dest: Path) -> None:
    """Members at ~150:1 (flat images), each read partly ahead by the decompressor: all imported."""
    rng = np.random.default_rng(0)
    archive_path = tmp_path / "flat.tar.gz"
    with tarfile.open(archive_path, "w:gz", compresslevel=9) as archive:
        for index in range(5):
            pixels = np.zeros(2 * importer.RATIO_FREE_BYTES, np.uint8)
            pixels[::512] = rng.integers(1, 256, pixels[::512].size)
            add_member(archive, f"{index}.ppm", pixels.tobytes())
    ratio = 5 * 2 * importer.RATIO_FREE_BYTES / archive_path.stat().st_size
    assert 100 < ratio < importer.DEFAULT_MAX_RATIO
    summary = import_dataset(archive_path, dest, LOG, existing=ADD)
    assert sorted(summary.imported) == [f"{index}.ppm" for index in range(5)]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_many_small_members_are_refused_by_the_archive_ratio(tmp_path: Path, dest: Path, kind: str) -> None:
    """Each member is below RATIO_FREE_BYTES (never judged alone); together they expand ~1000:1."""
    members = {f"{index:02d}.bmp": importer.RATIO_FREE_BYTES // 2 for index in range(40)}
    make = zip_of_zeros if kind == "zip" else tar_gz_of_zeros
    bomb = make(tmp_path / f"many.{kind}", members)
    with pytest.raises(DatasetImportError, match=r"bytes from an archive of \d+ \(\d+:1, more than max_ratio=200\)"):
        import_dataset(bomb, dest, LOG, existing=ADD)
    assert_untouched(dest)


def test_max_ratio_lets_a_genuine_compressible_archive_in(tmp_path: Path, dest: Path) -> None:
    flat = zip_of_zeros(tmp_path / "flat.zip", {"white.bmp": 2 * importer.RATIO_FREE_BYTES})
    with pytest.raises(DatasetImportError, match="max_ratio=200"):
        import_dataset(flat, dest, LOG, existing=ADD)
    summary = import_dataset(flat, dest, LOG, existing=ADD, max_ratio=5000)
    assert sorted(summary.imported) == ["good.png", "white.bmp"]
    assert (dest / "white.bmp").stat().st_size == 2 * importer.RATIO_FREE_BYTES
    with pytest.raises(DatasetImportError, match="max_ratio must be a finite number >= 1"):
        import_dataset(flat, dest, LOG, existing=ADD, max_ratio=0.5)


def test_the_byte_cap_is_sized_to_the_free_disk_space(tmp_path: Path, dest: Path, monkeypatch) -> None:
    stored = tmp_path / "photos.zip"
    with zipfile.ZipFile(stored, "w") as archive:  # stored, not compressed: ratio 1, only the size matters
        archive.writestr("big.bmp", os.urandom(3 << 20))
    usage = shutil.disk_usage(dest)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: usage._replace(free=importer.DISK_RESERVE_BYTES + (2 << 20)))
    with pytest.raises(DatasetImportError, match=r"more than the 2097152 bytes that fit on the destination's disk"):
        import_dataset(stored, dest, LOG, existing=ADD)
    assert_untouched(dest)

    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=importer.DISK_RESERVE_BYTES // 2))
    with pytest.raises(DatasetImportError, match="bytes free, and an import leaves"):
        import_dataset(stored, dest, LOG, existing=ADD)
    assert_untouched(dest)


def test_the_given_cap_is_kept_when_the_disk_has_room(tmp_path: Path) -> None:
    cap = importer.byte_cap(1000, tmp_path)
    assert cap.limit == 1000 and not cap.by_disk and cap.free > 1000


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_new_folders_and_files_follow_the_umask(tmp_path: Path, umask: int, folder_mode: int, file_mode: int) -> None:
    src = tmp_path / "photos"
    (src / "trips").mkdir(parents=True)
    (src / "trips" / "a.png").write_bytes(png_bytes())
    previous = os.umask(umask)
    try:
        dest = tmp_path / "data" / "raw"
        import_dataset(src, dest, LOG, existing=ADD)                       # a fresh destination: the staged folder renamed
        (src / "more").mkdir()
        (src / "more" / "b.png").write_bytes(png_bytes()[:-1] + b"\1")
        import_dataset(src, dest, LOG, existing=ADD)         # into an existing one: new folders made there
    finally:
        os.umask(previous)
    modes = {path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in [tmp_path / "data", *sorted((tmp_path / "data").rglob("*"))]}
    assert modes == {
        "data": folder_mode, "data/raw": folder_mode, "data/raw/trips": folder_mode, "data/raw/more": folder_mode,
        "data/raw/trips/a.png": file_mode, "data/raw/more/b.png": file_mode,
    }


def test_parse_byte_size() -> None:
    assert parse_byte_size("5000") == 5000
    assert parse_byte_size("500M") == 500 * 2**20 and parse_byte_size("64G") == 64 * 2**30
    assert parse_byte_size("1.5GiB") == 3 * 2**29 and parse_byte_size("2GB") == 2 * 10**9
    assert parse_byte_size(" 10 kb ") == 10_000
    for bad in ("", "G", "-5", "5 bananas", "0", "1e9"):
        with pytest.raises(ValueError):
            parse_byte_size(bad)


def test_cli_flags_set_the_ratio_and_the_cap(tmp_path: Path) -> None:
    params = str(shutil.copy2(REPO_ROOT / "params.yaml", tmp_path / "params.yaml"))
    flat = zip_of_zeros(tmp_path / "flat.zip", {"white.bmp": 2 * importer.RATIO_FREE_BYTES})
    refused = run([SCENEGAN, "data", "import", str(flat), "--params", params, "--max-bytes", "1M"], tmp_path, check=False)
    assert refused.returncode == 2 and "max_total_bytes=1048576" in refused.stderr
    refused = run([SCENEGAN, "data", "import", str(flat), "--params", params], tmp_path, check=False)
    assert refused.returncode == 2 and "max_ratio=200" in refused.stderr
    assert not (tmp_path / "data" / "raw").exists()

    document = json.loads(run([SCENEGAN, "data", "import", str(flat), "--params", params, "--max-ratio", "5000",
                               "--max-bytes", "64G", "--json"], tmp_path).stdout)
    assert document["ok"] is True and sorted(document["imported"]) == ["good.png", "white.bmp"]

    bad = run([SCENEGAN, "data", "import", str(flat), "--params", params, "--max-ratio", "0.5"], tmp_path, check=False)
    assert bad.returncode == 2 and "--max-ratio" in bad.stderr
