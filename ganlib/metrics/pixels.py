"""Downscaled pixels for the memorisation check's second opinion (memorisation.py).

    pixel_side(resolution)                       the side images are compared at: 32, or less for smaller images
    downscaled(images, side)                     uint8 [B, 3, R, R] -> uint8 rows [B, 3 * side * side]
    reference_pixels(images, indices, side)      a prepared dataset's rows (a memmap is fine), in chunks
    PixelKeepingGenerator                        a SeededGenerator that keeps a downscaled copy of each image it makes

Comparing at 32 x 32 (box-averaged) makes a copy that the generator rendered
a little blurred or shifted by a pixel still a near-copy, and keeps 10k x
10k comparisons cheap (3072 numbers an image). The rows stay uint8: 150 MB at
50k images, where float32 would be 600 MB; neighbours.py converts each tile.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganlib.metrics.sources import SampleLabels, SeededGenerator

PIXEL_SIDE = 32
_CHUNK = 512   # images decoded from the memmap and averaged at a time


def pixel_side(resolution: int) -> int:
    """PIXEL_SIDE, or the images' own side when they are smaller (never upsampled)."""
    return min(PIXEL_SIDE, int(resolution))


def downscaled(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 [B, 3, R, R] -> box-averaged, rounded uint8 [B, 3 * side * side] on the CPU."""
    if images.shape[-1] != side or images.shape[-2] != side:
        images = F.adaptive_avg_pool2d(images.to(torch.float32), side).round().clamp(0, 255).to(torch.uint8)
    return images.reshape(len(images), -1).cpu()


def reference_pixels(images: np.ndarray, indices: np.ndarray | None, side: int) -> torch.Tensor:
    """Rows of `images` (NHWC uint8, e.g. a prepared dataset's memmap) at `indices` (None: all), downscaled."""
    chosen = np.arange(len(images)) if indices is None else np.asarray(indices)
    chunks = []
    for start in range(0, len(chosen), _CHUNK):
        batch = np.ascontiguousarray(images[chosen[start:start + _CHUNK]].transpose(0, 3, 1, 2))
        chunks.append(downscaled(torch.from_numpy(batch), side))
    return torch.cat(chunks)


class PixelKeepingGenerator(SeededGenerator):
    """SeededGenerator whose images are also kept, downscaled, in the order made (`kept_pixels()`)."""

    def __init__(self, generator: nn.Module, z_dim: int, resolution: int, side: int,
                 sample_labels: SampleLabels | None = None):
        super().__init__(generator, z_dim, resolution, sample_labels)
        self.side = side
        self._kept: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = super().forward(z, labels)
        self._kept.append(downscaled(images, self.side))
        return images

    def kept_pixels(self) -> torch.Tensor:
        """Every image made so far, downscaled, as uint8 rows [N, 3 * side * side]."""
        return torch.cat(self._kept) if self._kept else torch.empty(0, 3 * self.side * self.side, dtype=torch.uint8)
