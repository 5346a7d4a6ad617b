"""Images -> features: real images through torch-fidelity's own loop, generated ones through the sampling contract.

Generated images are made by ganlib.models.sampling's fixed_latents and
to_uint8, the functions publishing and training's grids use, so the images
measured for a seed are the images published for it. Those latents are
torch-fidelity's own "normal" noise for the same seed, so the features (and
FID) equal what its calculate_metrics gives for the same generator.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.utils import get_featuresdict_from_dataset

from ganlib.metrics.exact_convolutions import exact_cuda_convolutions
from ganlib.metrics.sources import SeededGenerator
from ganlib.models.sampling import fixed_latents

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
    """Features of the `n_samples` images `model` makes from fixed_latents(n_samples, z_dim, seed), on the CPU.

    A model with sample labels (a class-conditional generator) makes image i as the class
    model.labels_for(n_samples)[i]: each batch gets its latents' own labels.
    """
    latents = fixed_latents(n_samples, model.z_size, seed)
    labels = model.labels_for(n_samples)
    batches: list[FeaturesDict] = []
    with exact_cuda_convolutions(device), torch.no_grad():
        for start in range(0, n_samples, batch_size):
            z = latents[start:start + batch_size].to(device)
            # Without labels, model(z) exactly as before: unconditional evaluation is unchanged.
            images = model(z) if labels is None else model(z, labels[start:start + batch_size])
            features = extractor.convert_features_tuple_to_dict(extractor(images))
            batches.append({layer: value.cpu() for layer, value in features.items()})
    return {layer: torch.cat([batch[layer] for batch in batches]) for layer in batches[0]}


