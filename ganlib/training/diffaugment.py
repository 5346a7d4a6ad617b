"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every D input.

Augmenting both real and generated images before the discriminator, with
operations the generator's gradient can pass through, keeps D from
memorising a small dataset without leaking the augmentations into G's
samples. Policies and magnitudes follow the reference implementation:
colour (brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]),
translation by up to 1/8 of the side (zero fill), cutout of a half-side square.

Randomness comes from an explicit torch.Generator so that training stays
reproducible and resumable bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import torch

Tensor = torch.Tensor
POLICIES = ("color", "translation", "cutout")


def diff_augment(images: Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """Apply the named augmentations, in order, to NCHW images in [-1, 1] (any float dtype)."""
    for name in policy:
        if name == "color":
            images = _color(images, generator)
        elif name == "translation":
            images = _translation(images, generator)
        elif name == "cutout":
            images = _cutout(images, generator)
        else:
            raise ValueError(f"train.diffaugment: unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return images


def augment_with_probability(
    images: Tensor, policy: Sequence[str], p: float, generator: torch.Generator | None = None
) -> Tensor:
    """Each image gets the `policy` augmentations with probability p, else passes unchanged.

    R3GAN (after StyleGAN2-ADA) augments only a fraction p of the discriminator's inputs
    and schedules p over the run. p = 1 is plain DiffAugment and draws exactly its random
    numbers, so runs that augment every image are unchanged by this option.
    """
    if p <= 0 or not policy:
        return images
    if p >= 1:
        return diff_augment(images, policy, generator)
    chosen = torch.rand(images.shape[0], 1, 1, 1, device=images.device, generator=generator) < p
    return torch.where(chosen, diff_augment(images, policy, generator), images)


def _uniform(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """One U[0, 1) number per image, shaped to broadcast over C, H, W."""
    return torch.rand(images.shape[0], 1, 1, 1, device=images.device, generator=generator).to(images.dtype)


def _color(x: Tensor, generator: torch.Generator | None) -> Tensor:
    x = x + (_uniform(x, generator) - 0.5)
    channel_mean = x.mean(dim=1, keepdim=True)
    x = (x - channel_mean) * (_uniform(x, generator) * 2) + channel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * (_uniform(x, generator) + 0.5) + image_mean


def _random_offsets(x: Tensor, low: int, high: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Per-image integer offsets in [low, high) for rows and columns, shaped [N, 1, 1]."""
    size = (x.shape[0], 1, 1)
    rows = torch.randint(low, high, size, device=x.device, generator=generator)
    cols = torch.randint(low, high, size, device=x.device, generator=generator)
    return rows, cols


def _translation(x: Tensor, generator: torch.Generator | None, ratio: float = 0.125) -> Tensor:
    n, _, h, w = x.shape
    shift = int(h * ratio + 0.5)
    dy, dx = _random_offsets(x, -shift, shift + 1, generator)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy          # source row per output pixel
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    flat = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)               # [N, H, W]
    index = flat.reshape(n, 1, h * w).expand(n, x.shape[1], h * w)
    shifted = x.reshape(n, x.shape[1], h * w).gather(2, index).reshape_as(x)
    return shifted * inside.to(x.dtype)


def _cutout(x: Tensor, generator: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    _, _, h, w = x.shape
    size = int(h * ratio + 0.5)
    # Centres may sit anywhere in the image, so a square can be clipped by the border.
    cy, cx = _random_offsets(x, 0, h + (1 - size % 2), generator)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    cut = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x * (~cut).unsqueeze(1).to(x.dtype)
