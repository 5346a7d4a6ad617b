"""Contact sheets: many images tiled into one, for sample grids and QA."""

from __future__ import annotations

import math

import numpy as np


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images [N, H, W, 3] into one uint8 image, row-major."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        sheet[top : top + h, left : left + w] = image
    return sheet
