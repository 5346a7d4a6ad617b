"""ganlib.data.preprocess: data/raw -> prepared dataset, atomically, deterministically, with every reject reported."""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlib.config import Params, load_params
from ganlib.data import dataset, images, preprocess, raw_check
from ganlib.data.preprocess import PreprocessError, prepare_dataset, scan_raw_directory
from ganlib.data.raw_check import RawDataCheckError

REPO = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("test_preprocess")
RAW, PREPARED = "data/raw", "data/prepared"


def make_params(*overrides: str) -> Params:
    base = [
        f"base.paths.raw={RAW}",
        f"base.paths.prepared={PREPARED}",
        "preprocess.resolution=32",
        "preprocess.min_side=16",
        "preprocess.max_aspect_ratio=3.0",
        "preprocess.max_pixels=1000000",
        "preprocess.dedupe=true",
        "preprocess.workers=1",
    ]
    return load_params(REPO / "params.yaml", overrides=[*base, *overrides])


def save_colour(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def output_bytes(root: Path) -> dict[str, bytes]:
    out = root / PREPARED
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture
def messy_raw(tmp_path: Path) -> Path:
    """A raw folder with three good images and one of every kind of bad input."""
    raw = tmp_path / RAW
    save_colour(raw / "b.png", (0, 255, 0))
    save_colour(raw / "a.png", (255, 0, 0), size=(48, 32))
    save_colour(raw / "nested" / "deeper" / "c.jpg", (0, 0, 255))
    (raw / "z_copy_of_a.png").write_bytes((raw / "a.png").read_bytes())
    (raw / "notes.txt").write_text("not a picture\n")
    (raw / "empty.jpg").write_bytes(b"")
    (raw / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(2048))
    save_colour(raw / "tiny.png", (1, 1, 1), size=(8, 8))
    save_colour(raw / "panorama.png", (2, 2, 2), size=(200, 20))
    save_colour(raw / "bomb.png", (3, 3, 3), size=(1001, 1000))
    good = (raw / "b.png").read_bytes()
    (raw / "cut.png").write_bytes(truncated_png_bytes())
    (raw / ".hidden.png").write_bytes(good)
    (raw / ".cache").mkdir()
    (raw / ".cache" / "x.png").write_bytes(good)
    return raw


def add_links_and_a_fifo(raw: Path) -> None:
    """What people put into data/raw by hand and `dvc add` must never read (see ganlib/data/raw_check.py)."""
    save_colour(raw.parent.parent / "outside.png", (9, 9, 9))
    # Relative link targets, so that the reports are the same wherever tmp_path is.
    (raw / "escape.png").symlink_to("../../outside.png")
    (raw / "nested").mkdir(exist_ok=True)
    (raw / "nested" / "link_to_b.png").symlink_to("../b.png")    # inside the folder: still refused
    (raw / "nested" / "loop").symlink_to(".")                    # a directory loop
    (raw / "dangling.png").symlink_to("missing.png")
    os.mkfifo(raw / "pipe.png")                                   # would block forever if opened


def truncated_png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[:600]


def test_prepares_good_images_and_reports_every_reject(tmp_path: Path, messy_raw: Path) -> None:
    summary = prepare_dataset(make_params(), LOG, root=tmp_path)

    prepared = dataset.open_prepared(tmp_path / PREPARED)
    assert prepared.count == summary.count == 3 and prepared.resolution == 32
    # Sorted relative paths: a.png, b.png, nested/deeper/c.jpg.
    colours = prepared.images.reshape(3, -1, 3).mean(axis=1)
    assert np.allclose(colours, [(255, 0, 0), (0, 255, 0), (0, 0, 255)], atol=3)

    qa = json.loads((tmp_path / PREPARED / dataset.QA_REPORT_FILE).read_text())
    reasons = {r["path"]: r["reason"] for r in qa["rejects"]}
    assert reasons == {
        "bomb.png": images.DECOMPRESSION_BOMB,
        "cut.png": images.TRUNCATED,
        "empty.jpg": images.NOT_AN_IMAGE,
        "noise.jpg": images.NOT_AN_IMAGE,
        "notes.txt": images.NOT_AN_IMAGE,
        "panorama.png": images.EXTREME_ASPECT_RATIO,
        "tiny.png": images.TOO_SMALL,
        "z_copy_of_a.png": preprocess.DUPLICATE,
    }
    details = {r["path"]: r["detail"] for r in qa["rejects"]}
    assert "data/raw/bomb.png" in details["bomb.png"]
    assert "data/raw/a.png" in details["z_copy_of_a.png"]     # names the copy that was kept
    assert str(tmp_path) not in json.dumps(qa)                 # reports do not depend on where the repo lives

    manifest = prepared.manifest
    assert manifest["format"] == dataset.FORMAT
    assert manifest["scanned"] == 11 and manifest["accepted"] == 3 and manifest["rejected"] == 8
    assert manifest["rejects_by_reason"][preprocess.DUPLICATE] == 1
    assert manifest["hidden_skipped"] == 2
    assert manifest["images_sha256"] and manifest["data_md5"] is None
    assert json.loads((tmp_path / PREPARED / "params.json").read_text())["preprocess"]["resolution"] == 32


def test_links_and_special_files_are_refused_before_any_file_is_read(tmp_path: Path, messy_raw: Path) -> None:
    add_links_and_a_fifo(messy_raw)
    # The FIFO has no writer: opening it would block this test forever, so finishing shows nothing was read.
    with pytest.raises(RawDataCheckError) as error:
        prepare_dataset(make_params(), LOG, root=tmp_path)
    assert str(error.value).splitlines()[1:6] == [
        "  data/raw/dangling.png: broken symlink to missing.png",
        "  data/raw/escape.png: symlink to ../../outside.png",
        "  data/raw/nested/link_to_b.png: symlink to ../b.png",
        "  data/raw/nested/loop: symlink to .",
        "  data/raw/pipe.png: FIFO",
    ]
    assert "`dvc add`" in str(error.value) and "scenegan data check" in str(error.value)
    assert {(e.path, e.kind) for e in error.value.entries} >= {("pipe.png", raw_check.FIFO)}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]  # no output, no staging


def test_the_scan_alone_still_rejects_links_it_must_not_follow(tmp_path: Path, messy_raw: Path) -> None:
    """scan_raw_directory keeps its own guard: a link made after the check is still never followed out."""
    add_links_and_a_fifo(messy_raw)
    scan = scan_raw_directory(messy_raw, RAW)
    reasons = {r.path: r.reason for r in scan.rejects}
    assert reasons == {
        "dangling.png": preprocess.BROKEN_SYMLINK,
        "escape.png": preprocess.SYMLINK_OUTSIDE_ROOT,
        "nested/loop": preprocess.ALREADY_SCANNED,
        "pipe.png": preprocess.NOT_A_REGULAR_FILE,
    }
    assert "nested/link_to_b.png" in [rel for rel, _ in scan.files]  # inside the folder: followed


def test_two_runs_are_byte_identical(tmp_path: Path, messy_raw: Path) -> None:
    prepare_dataset(make_params(), LOG, root=tmp_path)
    first = output_bytes(tmp_path)
    prepare_dataset(make_params(), LOG, root=tmp_path)
    assert output_bytes(tmp_path) == first
    assert sorted(first) == ["images.npy", "manifest.json", "params.json", "qa_report.json"]


def test_two_workers_give_the_same_bytes_as_one(tmp_path: Path, messy_raw: Path) -> None:
    prepare_dataset(make_params("preprocess.workers=1"), LOG, root=tmp_path)
    inline = output_bytes(tmp_path)
    prepare_dataset(make_params("preprocess.workers=2"), LOG, root=tmp_path)
    parallel = output_bytes(tmp_path)
    del inline["params.json"], parallel["params.json"]  # it records the workers setting itself
    assert parallel == inline


def test_worker_processes_apply_max_pixels_instead_of_pillows_limit(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save_colour(raw / "fine.png", (5, 6, 7))
    (raw / "giant.png").write_bytes(png_header_only(100_000, 100_000))
    prepare_dataset(make_params("preprocess.workers=2", "preprocess.max_pixels=200000000"), LOG, root=tmp_path)
    qa = json.loads((tmp_path / PREPARED / dataset.QA_REPORT_FILE).read_text())
    [giant] = qa["rejects"]
    assert giant["reason"] == images.DECOMPRESSION_BOMB
    assert "data/raw/giant.png" in giant["detail"] and "preprocess.max_pixels=200000000" in giant["detail"]
    assert Image.MAX_IMAGE_PIXELS is not None  # this process's Pillow guard is untouched


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_images_npy_loads_memory_mapped(tmp_path: Path, messy_raw: Path) -> None:
    prepare_dataset(make_params(), LOG, root=tmp_path)
    array = np.load(tmp_path / PREPARED / dataset.IMAGES_FILE, mmap_mode="r")
    assert isinstance(array, np.memmap) and array.shape == (3, 32, 32, 3) and array.dtype == np.uint8


def test_dedupe_off_keeps_identical_files(tmp_path: Path, messy_raw: Path) -> None:
    summary = prepare_dataset(make_params("preprocess.dedupe=false"), LOG, root=tmp_path)
    assert summary.count == 4  # a.png, b.png, c.jpg, z_copy_of_a.png
    assert preprocess.DUPLICATE not in summary.rejects_by_reason


def test_records_the_dvc_md5_of_the_dataset(tmp_path: Path) -> None:
    save_colour(tmp_path / RAW / "a.png", (5, 6, 7))
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n")
    summary = prepare_dataset(make_params(), LOG, root=tmp_path)
    manifest = json.loads((tmp_path / PREPARED / dataset.MANIFEST_FILE).read_text())
    assert manifest["data_md5"] == summary.data_md5 == "0123456789abcdef0123456789abcdef"


def test_data_md5_names_only_the_folder_it_was_recorded_for(tmp_path: Path) -> None:
    """base.paths.raw elsewhere: data.dvc (which tracks data/raw) must not name that folder's dataset."""
    save_colour(tmp_path / "other" / "photos" / "a.png", (5, 6, 7))
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n")
    params = make_params("base.paths.raw=other/photos")
    assert prepare_dataset(params, LOG, root=tmp_path).data_md5 is None
    assert json.loads((tmp_path / PREPARED / dataset.MANIFEST_FILE).read_text())["data_md5"] is None

    # What `dvc add other/photos` writes: that folder's own record.
    (tmp_path / "other" / "photos.dvc").write_text("outs:\n- md5: fedcba9876543210fedcba9876543210.dir\n  path: photos\n")
    assert prepare_dataset(params, LOG, root=tmp_path).data_md5 == "fedcba9876543210fedcba9876543210"
    assert json.loads((tmp_path / PREPARED / dataset.MANIFEST_FILE).read_text())["data_md5"] == (
        "fedcba9876543210fedcba9876543210")


def test_nothing_usable_fails_and_writes_nothing(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    raw.mkdir(parents=True)
    (raw / "readme.txt").write_text("hello\n")
    save_colour(raw / "tiny.png", (0, 0, 0), size=(4, 4))
    with pytest.raises(PreprocessError) as error:
        prepare_dataset(make_params(), LOG, root=tmp_path)
    message = str(error.value)
    assert RAW in message and images.NOT_AN_IMAGE in message and images.TOO_SMALL in message
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]  # no output, no staging left


def test_failure_leaves_the_previous_output_untouched(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save_colour(raw / "a.png", (5, 6, 7))
    prepare_dataset(make_params(), LOG, root=tmp_path)
    before = output_bytes(tmp_path)
    (raw / "a.png").write_text("now a text file\n")
    with pytest.raises(PreprocessError):
        prepare_dataset(make_params(), LOG, root=tmp_path)
    assert output_bytes(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared", "raw"]


def test_symlinks_into_the_dvc_cache_are_the_dataset(tmp_path: Path) -> None:
    # What `dvc checkout` makes of data/raw with `cache.type symlink`.
    cached = tmp_path / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef0123"
    save_colour(cached.with_suffix(".png"), (5, 6, 7))
    cached.with_suffix(".png").rename(cached)
    (tmp_path / RAW).mkdir(parents=True)
    (tmp_path / RAW / "a.png").symlink_to(cached)
    assert prepare_dataset(make_params(), LOG, root=tmp_path).count == 1


def test_missing_or_empty_raw_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PreprocessError, match="data/raw: raw dataset directory not found"):
        prepare_dataset(make_params(), LOG, root=tmp_path)
    (tmp_path / RAW / ".only_hidden").mkdir(parents=True)
    with pytest.raises(PreprocessError, match="data/raw: no files found"):
        prepare_dataset(make_params(), LOG, root=tmp_path)
    assert not (tmp_path / PREPARED).exists()
