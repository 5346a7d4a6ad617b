"""Frames -> a looping video file's bytes: MP4 (H.264) through imageio-ffmpeg, else animated WebP or GIF through Pillow.

    encode_video(frames, fps, preferred) -> EncodedVideo(data, format, reason)
    video_format_for(path, flag)         the format a file name asks for (.mp4, .webp, .gif)

MP4 is the smallest and plays everywhere, but needs an ffmpeg binary: the
imageio-ffmpeg wheel bundles one. When it is missing (not installed, a
platform without a wheel, a broken binary) or fails, the frames go to an
animated WebP instead (lossless, loops by itself; every current browser
shows it in an <img>), or a GIF where this Pillow has no WebP support.
`reason` says which was written and why, for the person reading the output.

An MP4 has no loop flag: a page loops it with <video loop>. WebP and GIF
carry loop = 0 (forever). The encoders are told to write no timestamps or
encoder-version tags where they allow it, so the same frames give the same
bytes on the same machine.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ganlib.errors import UserFacingError

VideoFormatName = Literal["mp4", "webp", "gif"]
MIME_TYPES: dict[str, str] = {"mp4": "video/mp4", "webp": "image/webp", "gif": "image/gif"}
MP4_CRF = 18  # x264's "visually lossless" end; the frames are small, so the files stay small too


class VideoFormatError(UserFacingError, ValueError):
    """An output file name whose suffix is not a video format this module writes."""


@dataclass(frozen=True)
class EncodedVideo:
    data: bytes
    format: VideoFormatName
    reason: str          # which encoder wrote it and, for a fallback, why the preferred one was not used

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def suffix(self) -> str:
        return f".{self.format}"


def video_format_for(path: Path, flag: str = "--out") -> VideoFormatName:
    """The format `path`'s suffix asks for; anything else is a VideoFormatError naming `flag`."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in MIME_TYPES:
        raise VideoFormatError(
            f"{flag} {path}: a latent walk is written as .mp4, .webp or .gif; name the file with one of those suffixes"
        )
    return suffix  # type: ignore[return-value]


def encode_video(frames: np.ndarray, fps: int, preferred: VideoFormatName = "mp4") -> EncodedVideo:
    """uint8 frames [T, H, W, 3] -> a looping video in `preferred` format, or the fallback (see the module note)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 1:
        raise ValueError(f"expected uint8 frames [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if fps < 1:
        raise ValueError(f"fps must be at least 1, got {fps}")
    why_not = ""
    if preferred == "mp4":
        try:
            return EncodedVideo(_mp4_bytes(frames, fps), "mp4", "MP4 (H.264) through imageio-ffmpeg's bundled ffmpeg")
        except Exception as exc:  # noqa: BLE001 - any encoder failure: fall back, and say why
            why_not = f"MP4 could not be written ({_short(exc)}), so "
    if preferred in ("mp4", "webp"):
        if _pillow_writes_webp():
            return EncodedVideo(_pillow_bytes(frames, fps, "WEBP"), "webp", f"{why_not}animated WebP through Pillow")
        why_not += "this Pillow has no WebP support, so "
    gif = _pillow_bytes(frames, fps, "GIF")
    return EncodedVideo(gif, "gif", f"{why_not}GIF through Pillow (256 colours per frame)")


def _mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    import imageio_ffmpeg  # imported here: the fallbacks work without it

    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory(prefix="scenegan-video-") as scratch:
        # ffmpeg writes a file: the MP4 index (moved to the front by +faststart) needs a seekable output.
        path = Path(scratch) / "walk.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
            macro_block_size=2,  # yuv420p needs even sides; nothing else is required of the size
            ffmpeg_log_level="error",
            output_params=["-crf", str(MP4_CRF), "-preset", "medium", "-movflags", "+faststart",
                           "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"],
        )
        writer.send(None)  # start ffmpeg
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
        return path.read_bytes()


def _pillow_writes_webp() -> bool:
    from PIL import features

    return bool(features.check("webp"))


def _pillow_bytes(frames: np.ndarray, fps: int, kind: Literal["WEBP", "GIF"]) -> bytes:
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    # GIF counts in units of 10 ms: round there, so its speed matches the others as closely as it can.
    duration_ms = round(1000 / fps, -1 if kind == "GIF" else 0)
    options = {"lossless": True, "quality": 100, "method": 4, "exact": True} if kind == "WEBP" else {"optimize": False}
    pictures[0].save(buffer, format=kind, save_all=True, append_images=pictures[1:], duration=int(duration_ms),
                     loop=0, **options)
    return buffer.getvalue()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")
