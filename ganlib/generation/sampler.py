"""Latents per seed, and a generator run in fixed-size fp32 batches: what makes generated pixels repeatable.

    seed_latents(first_seed, n, z_dim)      row i = fixed_latents(1, z_dim, first_seed + i)
    check_seed_range(first_seed, n, flag)   a clear error when a seed falls outside numpy's range
    render(generator, latents, ...)         uint8 NHWC batches, in order, each computed in a batch of batch_size
    seed_classes(first_seed, n, classes)    a conditional generator's default class per seed: seed mod C

"Image i uses seed S + i": each image has its own seed, so any one image
can be made again alone (`--seed 1234 --n 1` is image 34 of `--seed 1200
--n 100`). fixed_latents' numpy stream makes the latent itself identical on
every machine.

The pixels are another matter: a convolution's result depends, in its last
bits, on the batch it is computed in. oneDNN (and cuDNN) pick kernels and
blockings by tensor shape, and on this project's machines the resnet and r3gan
generators gave ~50 of 1.2M uint8 values different for a batch of 1 versus 64.
Where a sample sits inside a batch of a given size made no difference. So
every batch is padded to exactly `batch_size` rows (zero latents, whose
images are dropped): image i then depends only on its latent, the batch size,
the device and the precision, never on n or on its position. The padding
costs at most one batch of extra work.

Precision is fp32 throughout. On CUDA, cuDNN may otherwise run convolutions
in TF32 (its default) and pick algorithms by timing: `exact_fp32` turns both
off for the duration, without changing the process's settings afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ganlib.errors import UserFacingError
from ganlib.models.sampling import fixed_latents, to_uint8_images
from ganlib.models.truncation import truncate_latents

PRECISION = "fp32"
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)


class GenerationError(UserFacingError, RuntimeError):
    """Bad generation input (seeds, sizes, output paths) or a generator whose output is not an image."""


def check_seed_range(first_seed: int, n: int, flag: str = "--seed") -> None:
    """GenerationError naming `flag` unless seeds first_seed .. first_seed + n - 1 are all valid numpy seeds."""
    if first_seed < 0 or first_seed + n - 1 > MAX_SEED:
        raise GenerationError(
            f"{flag} {first_seed} with {n} image(s) uses seeds up to {first_seed + n - 1}; "
            f"seeds must lie in 0..{MAX_SEED}: choose a smaller {flag}"
        )


def seed_classes(first_seed: int, n: int, n_classes: int) -> torch.Tensor:
    """The class a conditional generator draws for seeds first_seed .. first_seed + n - 1 when none is asked for.

    Tied to the seed, like the latent, so the image of seed s is the same whatever run it is part of.
    """
    return torch.arange(first_seed, first_seed + n) % n_classes


def seed_latents(first_seed: int, n: int, z_dim: int) -> torch.Tensor:
    """[n, z_dim] float32 on the CPU: row i is the latent of seed first_seed + i."""
    check_seed_range(first_seed, n)
    if n == 0:
        return torch.empty(0, z_dim)
    return torch.cat([fixed_latents(1, z_dim, first_seed + i) for i in range(n)])


@contextlib.contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """True fp32 (no TF32) and deterministic algorithm choice on CUDA inside the block; nothing to do elsewhere."""
    if device.type != "cuda":
        yield
        return
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


@torch.no_grad()
def render(
    generator: nn.Module,
    latents: torch.Tensor,
    resolution: int | None,
    batch_size: int,
    device: torch.device,
    truncation: float = 1.0,
    labels: torch.Tensor | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 [B, R, R, 3] batches of generator(truncate(latents)), in order (the last one may be shorter).

    `labels` (long, one per latent): a class-conditional generator's class of each image.

    Each batch is computed as exactly `batch_size` rows (see the module note).
    `resolution` None accepts any square output (the walk, which is not told it).
    The generator must be in eval mode on `device` (load_generator returns it so).
    """
    if batch_size < 1:
        raise GenerationError(f"batch size must be at least 1, got {batch_size}")
    latents = truncate_latents(latents, truncation)
    with exact_fp32(device):
        for start in range(0, latents.shape[0], batch_size):
            chunk = latents[start:start + batch_size]
            rows = chunk.shape[0]
            if rows < batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros(batch_size - rows, chunk.shape[1])])
            chunk = chunk.to(device=device, dtype=torch.float32)
            if labels is None:
                output = generator(chunk)[:rows]
            else:
                classes = labels[start:start + batch_size].to(device=device, dtype=torch.long)
                if rows < batch_size:
                    classes = torch.cat([classes, classes.new_zeros(batch_size - rows)])
                output = generator(chunk, classes)[:rows]
            yield checked_images(output, resolution)


def checked_images(
    output: torch.Tensor,
    resolution: int | None,
    *,
    error: type[Exception] = GenerationError,
    mismatch_advice: str = "the generator file does not match its recorded resolution",
    nonfinite_advice: str = "use an earlier generator file (--generator PATH)",
) -> np.ndarray:
    """Generator output [B, 3, R, R] -> uint8 [B, R, R, 3]; a wrong shape or NaN/inf raises `error` with the advice.

    The one check of a generator's output before its pixels are used (here and in the gallery, which gives
    its own advice)."""
    side = resolution if resolution is not None else (output.shape[-1] if output.ndim == 4 else -1)
    expected = (3, side, side)
    if output.ndim != 4 or tuple(output.shape[1:]) != expected:
        raise error(f"generator output has shape {tuple(output.shape)}, expected [B, {_shape_text(resolution)}]: "
                    f"{mismatch_advice}")
    if not torch.isfinite(output).all():
        raise error(f"generator output contains NaN or infinite values (training diverged?); {nonfinite_advice}")
    return to_uint8_images(output)


def _shape_text(resolution: int | None) -> str:
    return "3, R, R (square)" if resolution is None else f"3, {resolution}, {resolution}"
