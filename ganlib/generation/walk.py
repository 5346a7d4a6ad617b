"""Latent walks: a looping video through K keyframe latents, for a page, a Prefect artifact or a person.

The API the publish stage (and `scenegan generate --walk K`) calls:

    video = latent_walk_video(generator, z_dim=info.z_dim, seed=2024, keyframes=4)
    video.data, video.format, video.suffix, video.mime_type, video.reason   # bytes to store anywhere

    walk = write_latent_walk(generator, z_dim=info.z_dim, seed=2024, path=Path("walk.mp4"))
    walk.path, walk.format, walk.reason                                      # the file actually written

Both take keyword arguments after the generator: seed, keyframes
(DEFAULT_KEYFRAMES), frames_per_keyframe (DEFAULT_FRAMES_PER_KEYFRAME), fps
(DEFAULT_FPS), device (CPU), truncation (1.0: none), batch_size, scale (None:
the smallest whole factor that makes the video at least MIN_VIDEO_SIDE px;
nearest-neighbour, so pixels stay sharp) and log (a Logger for progress, or
None). `preferred` (latent_walk_video) or the path's suffix (write_latent_walk)
picks mp4, webp or gif; when MP4 cannot be written the video is an animated
WebP (or GIF), `format`/`suffix` say which, `reason` says why, and
write_latent_walk writes it under the path with that suffix. It refuses to
replace an existing file unless overwrite=True.

What the walk is: keyframe k is the latent of seed `seed + k` (image k of
`scenegan generate --seed SEED`); the video travels keyframe 0 -> 1 -> ... ->
K-1 and back to 0, frames_per_keyframe frames per leg, so it has
K * frames_per_keyframe frames and the frame after the last one is the first
(the file loops without a jump). Legs are spherical interpolations (slerp):
Gaussian latents lie near a sphere, and a straight line between two of them
cuts through low-norm latents the generator rarely saw (the middle of each leg
fades toward a grey "average" scene). Truncation scales every frame's latent
by psi, which commutes with slerp: the same walk, drawn toward the mean.

The defaults are cheap on purpose (4 keyframes x 20 frames at 24 fps: 80
frames, 3.3 s): the publish stage makes one during `make demo` on a 2-core CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganlib.generation.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FPS,
    DEFAULT_FRAMES_PER_KEYFRAME,
    DEFAULT_KEYFRAMES,
    MIN_VIDEO_SIDE,
)
from ganlib.generation.sampler import PRECISION, GenerationError, render, seed_latents
from ganlib.generation.video import MIME_TYPES, VideoFormatName, encode_video, video_format_for
from ganlib.io.atomic import atomic_write_bytes
from ganlib.logs import Logger
from ganlib.models.truncation import check_truncation
from ganlib.progress import Progress


@dataclass(frozen=True)
class WalkVideo:
    """An encoded latent walk: its bytes and what they are."""

    data: bytes
    format: VideoFormatName
    reason: str                    # which encoder wrote it and, for a fallback, why
    frames: int
    fps: int
    width: int
    height: int
    seed: int
    keyframes: int
    frames_per_keyframe: int
    truncation: float
    scale: int
    device: str
    precision: str

    @property
    def suffix(self) -> str:
        return f".{self.format}"

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def keyframe_seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.keyframes))


@dataclass(frozen=True)
class WalkFile:
    """A latent walk written to disk: the path actually written (its suffix is the format) and its facts."""

    path: Path
    format: VideoFormatName
    reason: str
    size_bytes: int
    frames: int
    fps: int
    duration_s: float
    width: int
    height: int
    seed: int
    keyframe_seeds: list[int]
    frames_per_keyframe: int
    truncation: float
    scale: int
    device: str
    precision: str


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from rows of `a` to rows of `b` at fractions `t` ([N] or scalar), in float64.

    Norms are interpolated with the directions (the formula is linear in a and
    b), so the path keeps the typical norm of the endpoints. Nearly parallel
    rows, where the formula divides by ~0, fall back to a straight line.
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    cos_omega = ((a / a.norm(dim=1, keepdim=True)) * (b / b.norm(dim=1, keepdim=True))).sum(dim=1, keepdim=True)
    omega = torch.acos(cos_omega.clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    nearly_parallel = sin_omega.abs() < 1e-6
    safe_sin = torch.where(nearly_parallel, torch.ones_like(sin_omega), sin_omega)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / safe_sin
    return torch.where(nearly_parallel, (1 - t) * a + t * b, spherical)


def walk_latents(z_dim: int, seed: int, keyframes: int, frames_per_keyframe: int) -> torch.Tensor:
    """[keyframes * frames_per_keyframe, z_dim] float32: the loop through the latents of seeds seed .. seed+K-1.

    Frame k * frames_per_keyframe is keyframe k exactly; the leg from the last
    keyframe ends where frame 0 begins, so the frames repeat seamlessly.
    """
    check_walk_shape(keyframes, frames_per_keyframe)
    keys = seed_latents(seed, keyframes, z_dim)
    t = torch.arange(frames_per_keyframe, dtype=torch.float64) / frames_per_keyframe
    legs = []
    for k in range(keyframes):
        start, stop = keys[k:k + 1], keys[(k + 1) % keyframes:(k + 1) % keyframes + 1]
        leg = slerp(start.expand(frames_per_keyframe, -1), stop.expand(frames_per_keyframe, -1), t).to(torch.float32)
        leg[0] = start[0]  # exactly the keyframe, not slerp's rounding of it
        legs.append(leg)
    return torch.cat(legs)


def check_walk_shape(keyframes: int, frames_per_keyframe: int) -> None:
    if keyframes < 2:
        raise GenerationError(f"a latent walk needs at least 2 keyframes (--walk K), got {keyframes}")
    if frames_per_keyframe < 1:
        raise GenerationError(
            f"frames per keyframe must be at least 1 (--frames-per-keyframe), got {frames_per_keyframe}")


def latent_walk_video(
    generator: nn.Module,
    *,
    z_dim: int,
    seed: int,
    keyframes: int = DEFAULT_KEYFRAMES,
    frames_per_keyframe: int = DEFAULT_FRAMES_PER_KEYFRAME,
    fps: int = DEFAULT_FPS,
    device: torch.device = torch.device("cpu"),
    truncation: float = 1.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    scale: int | None = None,
    preferred: VideoFormatName = "mp4",
    log: Logger | None = None,
    label: int | None = None,
) -> WalkVideo:
    """The walk's frames rendered by `generator` (eval mode, on `device`) and encoded (see the module docstring).

    `label`: a class-conditional generator's class, the same for every frame (a class per frame would
    jump between classes as the walk goes)."""
    truncation = check_truncation(truncation)
    if fps < 1:
        raise GenerationError(f"fps must be at least 1 (--fps), got {fps}")
    latents = walk_latents(z_dim, seed, keyframes, frames_per_keyframe)
    labels = None if label is None else torch.full((latents.shape[0],), label, dtype=torch.long)
    frames = _render_frames(generator, latents, device, truncation, batch_size, log, labels)
    scale = auto_scale(frames.shape[1]) if scale is None else scale
    if scale < 1:
        raise GenerationError(f"scale must be at least 1, got {scale}")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    encoded = encode_video(frames, fps, preferred)
    return WalkVideo(
        data=encoded.data, format=encoded.format, reason=encoded.reason, frames=frames.shape[0], fps=fps,
        width=frames.shape[2], height=frames.shape[1], seed=seed, keyframes=keyframes,
        frames_per_keyframe=frames_per_keyframe, truncation=truncation, scale=scale, device=str(device),
        precision=PRECISION,
    )


def write_latent_walk(
    generator: nn.Module,
    *,
    z_dim: int,
    seed: int,
    path: Path,
    keyframes: int = DEFAULT_KEYFRAMES,
    frames_per_keyframe: int = DEFAULT_FRAMES_PER_KEYFRAME,
    fps: int = DEFAULT_FPS,
    device: torch.device = torch.device("cpu"),
    truncation: float = 1.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    scale: int | None = None,
    overwrite: bool = False,
    log: Logger | None = None,
    label: int | None = None,
) -> WalkFile:
    """latent_walk_video in the format `path`'s suffix names, written atomically; see the module docstring."""
    path = Path(path)
    preferred = video_format_for(path)
    refuse_existing_file(path, overwrite)
    video = latent_walk_video(
        generator, z_dim=z_dim, seed=seed, keyframes=keyframes, frames_per_keyframe=frames_per_keyframe, fps=fps,
        device=device, truncation=truncation, batch_size=batch_size, scale=scale, preferred=preferred, log=log,
        label=label,
    )
    written = path.with_suffix(video.suffix)
    if written != path:
        refuse_existing_file(written, overwrite)
    atomic_write_bytes(written, video.data)
    return WalkFile(
        path=written, format=video.format, reason=video.reason, size_bytes=len(video.data), frames=video.frames,
        fps=video.fps, duration_s=video.duration_s, width=video.width, height=video.height, seed=video.seed,
        keyframe_seeds=video.keyframe_seeds, frames_per_keyframe=video.frames_per_keyframe,
        truncation=video.truncation, scale=video.scale, device=video.device, precision=video.precision,
    )


def auto_scale(resolution: int) -> int:
    """The smallest whole factor that makes a `resolution` px frame at least MIN_VIDEO_SIDE px."""
    return max(1, math.ceil(MIN_VIDEO_SIDE / resolution))


def refuse_existing_file(path: Path, overwrite: bool) -> None:
    """GenerationError when `path` exists and may not be replaced (or is not a file at all)."""
    if path.is_dir():
        raise GenerationError(f"{path} is a directory; a latent walk is one file: choose a file name (walk.mp4)")
    if path.exists() and not overwrite:
        raise GenerationError(f"{path} already exists; choose another name or pass --overwrite to replace it")


def _render_frames(generator: nn.Module, latents: torch.Tensor, device: torch.device, truncation: float,
                   batch_size: int, log: Logger | None, labels: torch.Tensor | None) -> np.ndarray:
    if log is None:
        return np.concatenate(list(render(generator, latents, None, batch_size, device, truncation, labels)))
    batches = []
    with Progress(log, total=latents.shape[0], what="walk", unit="frames") as progress:
        for batch in render(generator, latents, None, batch_size, device, truncation, labels):
            batches.append(batch)
            progress.advance(len(batch))
    return np.concatenate(batches)
