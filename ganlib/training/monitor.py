"""What each training tick looks at: a sample grid and a mode-collapse indicator.

Both use the EMA generator on a fixed batch of latents, so successive ticks
show the same latents evolving. A class-conditional generator draws row r of
the grid as class r mod C, so the grid shows every class, a row each. The collapse indicator is the mean pairwise
distance between those samples, divided by the same quantity for a fixed
batch of real images: about 1 when samples vary as much as the data, falling
towards 0 when the generator collapses onto a few outputs.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganlib.models.grid import image_grid
from ganlib.models.sampling import fixed_latents, grid_row_labels, to_uint8_images


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean over pairs i < j of the RMS per-pixel difference between images i and j (images in [-1, 1])."""
    flat = images.detach().float().flatten(1)
    n = flat.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_distance needs at least two images")
    distances = torch.cdist(flat[None], flat[None])[0] / flat.shape[1] ** 0.5
    return float(distances.sum() / (n * (n - 1)))


def real_images_float(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (CPU)."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class TickMonitor:
    """Fixed latents and a fixed real reference, measured with the EMA generator at every tick."""

    def __init__(
        self, z_dim: int, grid_size: int, seed: int, real_reference: np.ndarray, device: torch.device, n_classes: int = 0,
    ) -> None:
        self.grid_size, self.device = grid_size, device
        self.latents = fixed_latents(max(grid_size * grid_size, 2), z_dim, seed)
        self.labels = grid_row_labels(len(self.latents), grid_size, n_classes)
        self.real_diversity = mean_pairwise_distance(real_images_float(real_reference))

    @torch.no_grad()
    def look(self, generator: nn.Module) -> tuple[bytes, float, float]:
        """(grid PNG bytes, diversity, diversity / real diversity) for an eval-mode generator."""
        latent_batches = self.latents.split(64)
        label_batches = self.labels.split(64) if self.labels is not None else [None] * len(latent_batches)
        samples = torch.cat([self._draw(generator, z, labels) for z, labels in zip(latent_batches, label_batches)])
        diversity = mean_pairwise_distance(samples)
        grid = image_grid(to_uint8_images(samples[: self.grid_size**2]), cols=self.grid_size)
        buffer = io.BytesIO()
        Image.fromarray(grid).save(buffer, format="PNG")
        return buffer.getvalue(), diversity, diversity / max(self.real_diversity, 1e-12)

    def _draw(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        z = z.to(self.device)
        images = generator(z) if labels is None else generator(z, labels.to(self.device))
        return images.float().cpu()

