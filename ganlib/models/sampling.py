"""Latents from fixed seeds, and generator output -> uint8 images.

The evaluation and publishing stages draw from a trained generator through
these functions, so "sample 1000 images with seed 7" means the same images
everywhere, on any device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def fixed_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n latents z ~ N(0, I), drawn on the CPU from `seed` (identical on every device), float32 [n, z_dim]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, z_dim, generator=generator)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """Generator output, NCHW in [-1, 1], -> uint8 NHWC RGB (values outside [-1, 1] are clipped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected generator output [N, 3, H, W], got {tuple(images.shape)}")
    pixels = (images.detach().float() * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate_images(generator: nn.Module, n: int, z_dim: int, seed: int, batch_size: int, device: torch.device) -> np.ndarray:
    """n uint8 NHWC images from latents fixed_latents(n, z_dim, seed), in batches on `device`."""
    if n < 1:
        raise ValueError(f"generate_images: n must be at least 1, got {n}")
    latents = fixed_latents(n, z_dim, seed)
    chunks = [to_uint8_images(generator(z.to(device))) for z in latents.split(batch_size)]
    return np.concatenate(chunks)
