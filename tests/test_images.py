"""ganlib.data.images: every Pillow mode becomes the right RGB, every bad file a named reject."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ganlib.config import PreprocessParams, apply_overrides
from ganlib.data import images

REPO = Path(__file__).resolve().parents[1]
BACKGROUND = (10, 120, 250)  # not white, so a composite onto it cannot pass by accident


def preprocess_params(*overrides: str) -> PreprocessParams:
    base = [
        "preprocess.resolution=16",
        "preprocess.min_side=16",
        "preprocess.max_aspect_ratio=3.0",
        f"preprocess.background=[{BACKGROUND[0]}, {BACKGROUND[1]}, {BACKGROUND[2]}]",
    ]
    # 16 px keeps these tests fast. No train.arch builds 16 px, so a whole params file refuses it; decoding
    # reads the preprocess section alone, so that section alone is validated (with all its own checks).
    raw = apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), [*base, *overrides])
    return PreprocessParams.model_validate(raw["preprocess"])


def decode(path: Path, *overrides: str) -> images.Decoded:
    return images.decode_image(path, preprocess_params(*overrides), name=path.name)


def decoded_image(path: Path, *overrides: str) -> np.ndarray:
    result = decode(path, *overrides)
    assert result.reject is None, result.reject
    assert result.image.shape == (16, 16, 3) and result.image.dtype == np.uint8
    return result.image.astype(int)


def halves(left: float | int, right: float | int, dtype: type, size: int = 64) -> np.ndarray:
    array = np.full((size, size), left, dtype=dtype)
    array[:, size // 2 :] = right
    return array


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    "name, array, stored_mode",
    [
        ("i16.png", halves(0, 65535, np.uint16), "I;16"),
        ("i16b.tif", halves(0, 65535, ">u2"), "I;16B"),
        ("i32.tif", halves(0, 65535, np.int32), "I"),
        ("f32.tif", halves(0.0, 1.0, np.float32), "F"),
    ],
)
def test_high_bit_depth_is_scaled_by_range_not_clipped(tmp_path: Path, name: str, array: np.ndarray, stored_mode: str) -> None:
    path = tmp_path / name
    Image.fromarray(array).save(path)
    with Image.open(path) as stored:
        assert stored.mode == stored_mode
    image = decoded_image(path)
    assert np.all(image[:, :4] <= 1)                # black stays black (not clipped to 255)
    assert np.all(image[:, -4:] >= 254)             # full scale maps to white
    assert np.all(image[..., 0] == image[..., 2])   # grey


def test_sixteen_bit_mid_grey_maps_to_mid_grey(tmp_path: Path) -> None:
    path = tmp_path / "mid.png"
    Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)).save(path)
    assert np.all(np.abs(decoded_image(path) - 128) <= 1)


def test_transparent_rgba_becomes_the_background(tmp_path: Path) -> None:
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[:, 16:, 3] = 255        # right half opaque red, left half fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = decoded_image(path)
    assert np.all(np.abs(image[:, :4] - BACKGROUND) <= 1)
    assert np.all(np.abs(image[:, -4:] - (200, 0, 0)) <= 1)


def test_half_transparent_la_blends_with_the_background(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.new("LA", (32, 32), (0, 128)).save(path)
    expected = np.array(BACKGROUND) * (1 - 128 / 255)
    assert np.all(np.abs(decoded_image(path) - expected) <= 2)


def test_palette_transparency_index_becomes_the_background(tmp_path: Path) -> None:
    palette_image = Image.new("P", (32, 32), 1)
    palette_image.putpalette([0, 0, 0, 30, 200, 40] + [0, 0, 0] * 254)
    palette_image.paste(0, (0, 0, 16, 32))   # left half: index 0, declared transparent
    path = tmp_path / "p.png"
    palette_image.save(path, transparency=0)
    image = decoded_image(path)
    assert np.all(np.abs(image[:, :4] - BACKGROUND) <= 1)
    assert np.all(np.abs(image[:, -4:] - (30, 200, 40)) <= 1)


def test_palette_without_transparency_uses_the_palette(tmp_path: Path) -> None:
    palette_image = Image.new("P", (32, 32), 1)
    palette_image.putpalette([0, 0, 0, 30, 200, 40] + [0, 0, 0] * 254)
    path = tmp_path / "p.gif"
    palette_image.save(path)
    assert np.all(np.abs(decoded_image(path) - (30, 200, 40)) <= 1)


def test_cmyk_converts_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)   # no cyan, full magenta + yellow = red
    assert np.all(decoded_image(path) == (255, 0, 0))
    jpeg = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(jpeg, quality=95)
    assert np.all(np.abs(decoded_image(jpeg) - (255, 0, 0)) <= 8)


def test_bilevel_converts_to_black_and_white(tmp_path: Path) -> None:
    path = tmp_path / "bw.png"
    Image.fromarray(halves(False, True, bool)).convert("1").save(path)
    image = decoded_image(path)
    assert np.all(image[:, :4] == 0) and np.all(image[:, -4:] == 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored: top half red, bottom half blue. Orientation 6 = "rotate 90 degrees
    # clockwise to display", which puts the stored top on the right.
    stored = np.zeros((128, 128, 3), dtype=np.uint8)
    stored[:64] = (255, 0, 0)
    stored[64:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    image = decoded_image(path)
    assert np.all(np.abs(image[:, :5] - (0, 0, 255)) <= 12)
    assert np.all(np.abs(image[:, -5:] - (255, 0, 0)) <= 12)


def test_non_square_is_center_cropped(tmp_path: Path) -> None:
    bands = np.zeros((64, 192, 3), dtype=np.uint8)
    bands[:, :64], bands[:, 64:128], bands[:, 128:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = tmp_path / "wide.png"
    Image.fromarray(bands).save(path)
    # LANCZOS reads a few pixels beyond the crop box, so look inside the edges.
    assert np.all(decoded_image(path)[:, 3:-3] == (0, 255, 0))


# --------------------------------------------------------------------------- resize quality


def test_downscaled_fine_checkerboard_does_not_alias(tmp_path: Path) -> None:
    checker = ((np.indices((256, 256)).sum(axis=0) % 2) * 255).astype(np.uint8)
    path = tmp_path / "checker.png"
    Image.fromarray(checker).save(path)
    image = decoded_image(path)
    # Point sampling would give pure black/white; an antialiased resize gives flat grey.
    assert abs(image.mean() - 127.5) < 2
    assert image.std() < 2


def test_jpeg_draft_matches_full_decode(tmp_path: Path) -> None:
    # A smooth photo-like image far larger than the target takes the draft path.
    y, x = np.mgrid[0:1024, 0:1024] / 1024.0
    photo = np.stack([x * 255, y * 255, (np.sin(6 * x) * np.cos(4 * y) * 0.5 + 0.5) * 255], axis=-1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(photo).save(path, quality=95)
    drafted = decoded_image(path)
    with Image.open(path) as im:
        full = np.asarray(images.resize_center_crop(im.convert("RGB"), 16)).astype(int)
    assert np.abs(drafted - full).max() <= 4


# --------------------------------------------------------------------------- rejects


def test_truncated_jpeg_and_png_are_rejected(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt, suffix in (("JPEG", ".jpg"), ("PNG", ".png")):
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, fmt)
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
        result = decode(path)
        assert result.image is None
        assert result.reject.reason == images.TRUNCATED
        assert path.name in result.reject.detail


@pytest.mark.parametrize(
    "name, content",
    [
        ("noise.jpg", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("notes.txt", b"this is not a picture\n"),
        ("empty.png", b""),
    ],
)
def test_non_images_are_rejected(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = decode(path)
    assert result.reject.reason == images.NOT_AN_IMAGE
    assert name in result.reject.detail


def test_corrupt_image_data_is_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 6 : idat + 14] = b"\xff" * 8    # garbage inside the compressed stream
    path = tmp_path / "broken.png"
    path.write_bytes(bytes(data))
    result = decode(path)
    assert result.reject.reason in (images.CORRUPT, images.TRUNCATED)
    assert "broken.png" in result.reject.detail


def test_image_over_max_pixels_is_rejected_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "wide_bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    result = decode(path, "preprocess.max_pixels=4000")
    assert result.reject.reason == images.DECOMPRESSION_BOMB
    assert "wide_bomb.png" in result.reject.detail and "preprocess.max_pixels" in result.reject.detail


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_giant_header_is_a_clean_reject_and_pillow_limit_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    limit_before = Image.MAX_IMAGE_PIXELS
    result = decode(path)   # the default max_pixels; Pillow's own guard fires at open
    assert result.reject.reason == images.DECOMPRESSION_BOMB
    assert "bomb.png" in result.reject.detail
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_too_small_and_extreme_aspect_ratio_are_rejected(tmp_path: Path) -> None:
    small, strip = tmp_path / "small.png", tmp_path / "strip.png"
    Image.new("RGB", (15, 40)).save(small)
    Image.new("RGB", (200, 20)).save(strip)
    assert decode(small).reject.reason == images.TOO_SMALL
    assert decode(strip).reject.reason == images.EXTREME_ASPECT_RATIO
    assert "strip.png" in decode(strip).reject.detail
    assert decode(strip, "preprocess.max_aspect_ratio=10.0").reject is None
