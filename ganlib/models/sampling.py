"""Latents from fixed seeds, and generator output -> uint8 images: the train <-> eval <-> publish contract.

Evaluation, publishing and training's sample grids all draw from a generator
through these two functions, so "sample 7 with seed s" is the same latent and
the same uint8 pixels everywhere: the image a gallery shows for seed s is the
image FID measured for seed s.

    fixed_latents(n, z_dim, seed)   latent i of seed s, identical on every device and for every n
    to_uint8(images)                [-1, 1] floats -> uint8 pixels, NCHW, on the images' device
    to_uint8_images(images)         the same pixels as NHWC numpy (PNG encoders, grids)
    grid_row_labels(n, cols, C)     a conditional generator's grid: class r mod C in row r
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def fixed_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n latents z ~ N(0, I) from `seed`, float32 [n, z_dim] on the CPU.

    numpy's legacy RandomState yields one value after another and its stream
    is frozen by numpy's compatibility policy, so latent i is the same whatever
    n is (sample_0003 stays sample_0003 when n grows, and a batch of 50 holds
    the first 50 of 1000) and on every machine. torch.randn has neither
    property: its CPU kernel changes algorithm with the tensor size. It is also
    exactly torch-fidelity's "normal" noise source, so our FID equals what
    calculate_metrics computes for the same generator and seed.
    """
    return torch.from_numpy(np.random.RandomState(seed).randn(n, z_dim)).to(torch.float32)


def grid_row_labels(n: int, cols: int, n_classes: int) -> torch.Tensor | None:
    """Class r mod n_classes for each of n samples laid out `cols` to a row (None when unconditional).

    Every sample grid of a class-conditional generator (training ticks, gallery, model card) shows a class per row.
    """
    if not n_classes:
        return None
    return (torch.arange(n) // cols) % n_classes


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output [N, 3, H, W] in [-1, 1] -> uint8 [N, 3, H, W], rounded to nearest, clipped, same device."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected generator output [N, 3, H, W], got {tuple(images.shape)}")
    return (images.detach().to(torch.float32) * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """to_uint8's pixels as uint8 NHWC RGB numpy, on the CPU."""
    return to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate_images(generator: nn.Module, n: int, z_dim: int, seed: int, batch_size: int, device: torch.device) -> np.ndarray:
    """n uint8 NHWC images from latents fixed_latents(n, z_dim, seed), in batches on `device`."""
    if n < 1:
        raise ValueError(f"generate_images: n must be at least 1, got {n}")
    latents = fixed_latents(n, z_dim, seed)
    chunks = [to_uint8_images(generator(z.to(device))) for z in latents.split(batch_size)]
    return np.concatenate(chunks)
