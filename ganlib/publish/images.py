"""The gallery's images: fixed latents -> generator -> uint8 pixels -> PNG/WebP bytes.

Latents and pixels follow ganlib.models.sampling (fixed_latents, to_uint8),
the contract evaluation uses too: sample i of a gallery published with
publish.seed s is, byte for byte, the i-th image evaluation measures with
evaluate.seed s. The grid shows the first grid_size**2 of those samples and
the interpolation strips run between them, so one seed fixes every image and
changing n_samples changes none of the earlier ones.

Everything here is deterministic: latents come from a seeded CPU generator,
the generator runs on the CPU in fp32, and the encoders write no timestamps,
so the same generator and params give byte-identical files.
"""

from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganlib.errors import UserFacingError
from ganlib.generation.sampler import checked_images
from ganlib.generation.walk import slerp
from ganlib.models.grid import image_grid
from ganlib.models.sampling import fixed_latents


class GeneratorOutputError(UserFacingError, RuntimeError):
    """The generator produced something that is not an image batch in [-1, 1]."""


def interpolation_latents(seed: int, rows: int, steps: int, z_dim: int) -> torch.Tensor:
    """[rows * steps, z_dim]: row i slerps from sample i to sample rows + i of `seed`, row-major."""
    ends = fixed_latents(2 * rows, z_dim, seed)
    starts, stops = ends[:rows], ends[rows:]
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float32)
    a = starts.repeat_interleave(steps, dim=0)
    b = stops.repeat_interleave(steps, dim=0)
    return slerp(a, b, t.repeat(rows)).to(torch.float32)


def generate_images(
    generator: nn.Module, latents: torch.Tensor, resolution: int, batch_size: int,
    labels: torch.Tensor | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 [B, R, R, 3] batches of generator(latents) (with `labels`, a conditional generator's classes), in order.

    The generator must already be on the CPU in fp32 (see the module note);
    its output is checked, so a broken checkpoint fails here with a message
    instead of publishing noise or black squares.
    """
    generator.eval()
    with torch.inference_mode():
        for start in range(0, latents.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            output = generator(latents[chunk]) if labels is None else generator(latents[chunk], labels[chunk])
            yield images_to_uint8(output, resolution)


def images_to_uint8(output: torch.Tensor, resolution: int) -> np.ndarray:
    """Generator output [B, 3, R, R] in [-1, 1] -> uint8 [B, R, R, 3], checked (GeneratorOutputError)."""
    return checked_images(
        output, resolution, error=GeneratorOutputError,
        mismatch_advice="the checkpoint does not match its recorded resolution: re-run the train stage",
        nonfinite_advice="nothing was published: re-run training or publish an earlier checkpoint",
    )


def generate_all(
    generator: nn.Module, latents: torch.Tensor, resolution: int, batch_size: int, labels: torch.Tensor | None = None,
) -> np.ndarray:
    return np.concatenate(list(generate_images(generator, latents, resolution, batch_size, labels)), axis=0)


def contact_sheet(images: np.ndarray, cols: int) -> np.ndarray:
    return image_grid(images, cols=cols, pad=2, pad_value=0)


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    """uint8 [H, W, 3] -> lossless PNG or WebP bytes, with no metadata (no timestamps)."""
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if image_format == "png":
        picture.save(buffer, format="PNG", compress_level=9)
    elif image_format == "webp":
        picture.save(buffer, format="WEBP", lossless=True, quality=100, method=4, exact=True)
    else:
        raise ValueError(f"publish.image_format {image_format!r}: expected png or webp")
    return buffer.getvalue()
