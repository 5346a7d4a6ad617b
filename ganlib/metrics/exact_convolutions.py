"""Exact float32 convolutions on CUDA while features are computed.

A module of its own (torch only): the nearest-neighbour code needs it too, and
importing it from the feature extraction would load torch-fidelity and
torchvision into every process that reads a memorisation record.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def exact_cuda_convolutions(device: torch.device) -> Iterator[None]:
    """Disable TF32 while features are extracted, then restore the caller's setting.

    TF32 convolutions (on by default for cuDNN, and training may enable them)
    shift Inception features by ~1e-3, enough to move FID between GPU
    generations; reference statistics must not depend on that.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
