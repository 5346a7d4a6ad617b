"""One image file -> one RGB uint8 array at the target resolution, or a reject.

Every failure a real photo collection contains (a truncated download, a text
file named .jpg, a 16-bit TIFF, a palette PNG with a transparent colour, a
phone photo stored sideways with an EXIF orientation tag, a 40000 x 40000
decompression bomb) becomes either a correct RGB image or a `Reject` with a
reason and a detail that names the file. Nothing here raises on bad input:
one bad file among a million must not stop the run.

Pillow's own bomb guard (the process-wide `Image.MAX_IMAGE_PIXELS`) is
replaced by `preprocess.max_pixels` only inside decoder worker processes
(`lift_pillow_pixel_limit`); in any other process it stays as it is, and an
image that trips it is still a clean reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganlib.config import PreprocessParams

# File names that say "image": what `scenegan data import` copies, and what the choice of
# labels (ganlib/data/labels.py) counts as an image before anything is decoded.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".gif",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".avif",
})

# Reject reasons (the keys of manifest.json "rejects_by_reason").
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
DECOMPRESSION_BOMB = "decompression_bomb"
TOO_SMALL = "too_small"
EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"

# Draft (DCT-domain downscaling) stops at this multiple of the target, so the
# final LANCZOS step still has real pixels to antialias from.
DRAFT_OVERSAMPLING = 2

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str


@dataclass(frozen=True)
class Decoded:
    """Exactly one of `image` (uint8 [R, R, 3]) and `reject` is set."""

    image: np.ndarray | None
    reject: Reject | None
    source_size: tuple[int, int] | None  # (width, height) as stored, before orientation


def decode_image(path: Path, cfg: PreprocessParams, name: str | None = None) -> Decoded:
    """Decode `path` to uint8 [cfg.resolution, cfg.resolution, 3], or say why not.

    `name` is how the file is called in reject details (default: the path as
    given); pass a relative path so that reports do not depend on where the
    dataset happens to live.
    """
    name = name or str(path)
    try:
        with Image.open(path) as im:
            return _decode_opened(im, cfg, name)
    except UnidentifiedImageError:
        size = _file_size(path)
        what = "empty file (0 bytes)" if size == 0 else f"Pillow cannot identify an image format ({size} bytes)"
        return _rejected(NOT_AN_IMAGE, f"{name}: {what}")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own process-wide guard fired before ours could (see module
        # docstring); its warning is an exception where warnings are errors.
        return _rejected(DECOMPRESSION_BOMB, f"{name}: {exc} (Pillow's limit in this process)")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
        return _rejected(*_classify_decode_error(exc, name, path))


def lift_pillow_pixel_limit() -> None:
    """Worker-process initializer: leave the bomb check to `preprocess.max_pixels`.

    Pillow's MAX_IMAGE_PIXELS is process-wide state; setting it in the
    caller's process would change behaviour for everything else running
    there, so only decoder workers call this.
    """
    Image.MAX_IMAGE_PIXELS = None


def pillow_allows_pixels(max_pixels: int) -> bool:
    """True if Pillow's guard in this process never fires below `max_pixels` pixels."""
    return Image.MAX_IMAGE_PIXELS is None or max_pixels <= Image.MAX_IMAGE_PIXELS


def to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> RGB: alpha composited onto `background`, high bit depths scaled, not clipped."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        return _high_depth_to_l(im).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        # "transparency" covers P with a transparent palette index and the
        # single transparent colour of L/RGB PNGs (tRNS); Pillow applies it
        # when converting to RGBA.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if im.mode == "RGB":
        return im
    # L, 1, P, CMYK, YCbCr, HSV, LAB: Pillow's own conversions (CMYK and LAB
    # without a colour profile, which is what most photo tools do too).
    return im.convert("RGB")


def resize_center_crop(im: Image.Image, resolution: int) -> Image.Image:
    """Shorter side to `resolution`, centre crop, LANCZOS (antialiased) in one step."""
    width, height = im.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return im.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))


def _decode_opened(im: Image.Image, cfg: PreprocessParams, name: str) -> Decoded:
    width, height = im.size
    early = _reject_by_size(width, height, cfg, name)
    if early is not None:
        return Decoded(image=None, reject=early, source_size=(width, height))

    # JPEG (and MPO) decode at 1/2, 1/4 or 1/8 scale for a fraction of the
    # cost: a 5000-px photo becomes ~600 px before the real resize. Other
    # formats ignore draft().
    target = cfg.resolution * DRAFT_OVERSAMPLING
    im.draft(None, (target, target))
    im.load()  # decoding happens here: truncation and corruption surface now

    oriented = ImageOps.exif_transpose(im)
    rgb = to_rgb(oriented, cfg.background)
    square = resize_center_crop(rgb, cfg.resolution)
    array = np.asarray(square, dtype=np.uint8)
    return Decoded(image=np.ascontiguousarray(array), reject=None, source_size=(width, height))


def _reject_by_size(width: int, height: int, cfg: PreprocessParams, name: str) -> Reject | None:
    # Checked from the header, before any pixel is decoded.
    pixels = width * height
    if pixels > cfg.max_pixels:
        return Reject(
            DECOMPRESSION_BOMB,
            f"{name}: {width}x{height} = {pixels} pixels exceeds preprocess.max_pixels={cfg.max_pixels} "
            "(raise preprocess.max_pixels if this image is genuine)",
        )
    shorter, longer = min(width, height), max(width, height)
    if shorter < cfg.min_side:
        return Reject(TOO_SMALL, f"{name}: {width}x{height}, shorter side {shorter} < preprocess.min_side={cfg.min_side}")
    if shorter == 0 or longer / shorter > cfg.max_aspect_ratio:
        ratio = longer / shorter if shorter else float("inf")
        return Reject(
            EXTREME_ASPECT_RATIO,
            f"{name}: {width}x{height}, aspect ratio {ratio:.2f} > preprocess.max_aspect_ratio={cfg.max_aspect_ratio}",
        )
    return None


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float greyscale -> 8-bit L, scaled by the range, never clipped.

    I;16* always spans 0..65535. "I" holding 0..65535 is 16-bit data (Pillow
    opens some 16-bit files that way); "F" holding 0..1 is a normalised
    float image; anything else is stretched from its own min..max.
    """
    values = np.asarray(im, dtype=np.float64)
    if im.mode in _SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
    elif im.mode == "I" and values.min() >= 0 and values.max() <= 65535:
        low, high = 0.0, 65535.0
    elif im.mode == "F" and values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    scaled = np.rint((values - low) * (255.0 / span))
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _classify_decode_error(exc: Exception, name: str, path: Path) -> tuple[str, str]:
    message = str(exc).replace(str(path), name)
    if isinstance(exc, OSError) and "truncated" in message:
        return TRUNCATED, f"{name}: truncated file ({message})"
    return CORRUPT, f"{name}: cannot decode ({type(exc).__name__}: {message})"


def _rejected(reason: str, detail: str) -> Decoded:
    return Decoded(image=None, reject=Reject(reason, detail), source_size=None)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
