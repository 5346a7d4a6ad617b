"""Images -> features, through the same loops torch-fidelity's calculate_metrics runs."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.utils import get_featuresdict_from_dataset, get_featuresdict_from_generative_model

from ganlib.metrics.sources import SeededGenerator

FeaturesDict = dict[str, torch.Tensor]


def dataset_features(images: Dataset, extractor: FeatureExtractorBase, batch_size: int, device: torch.device) -> FeaturesDict:
    """Features of every image in `images`, on the CPU, keyed by layer name."""
    with exact_cuda_convolutions(device):
        # save_cpu_ram=True means no DataLoader worker processes: the images are
        # a memmap already in memory, and workers would only compete for the CPU.
        return get_featuresdict_from_dataset(
            images, extractor, batch_size, cuda=device.type == "cuda", save_cpu_ram=True, verbose=False
        )


def generator_features(
    model: SeededGenerator, extractor: FeatureExtractorBase, n_samples: int, batch_size: int, seed: int, device: torch.device
) -> FeaturesDict:
    """Features of `n_samples` images generated from latents drawn with `seed`."""
    with exact_cuda_convolutions(device):
        return get_featuresdict_from_generative_model(
            model, extractor, n_samples, batch_size, cuda=device.type == "cuda", rng_seed=seed, verbose=False
        )


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
