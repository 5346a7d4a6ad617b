"""What gets measured: real images from a prepared dataset, and a generator sampled on the fly.

Both hand torch-fidelity uint8 [B, 3, H, W] batches, which is what its
feature extractors take. Generated images are never written to disk.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset
from torch_fidelity import GenerativeModelBase

from ganlib.metrics.errors import EvaluationError
from ganlib.models.sampling import to_uint8


class PreparedImages(Dataset):
    """uint8 [3, R, R] tensors from a prepared dataset's NHWC array (a memmap is fine)."""

    def __init__(self, images: np.ndarray, indices: np.ndarray | None = None):
        self.images = images
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> torch.Tensor:
        image = self.images[int(self.indices[item])]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def reference_indices(count: int, n_reference: int, seed: int) -> np.ndarray | None:
    """Which real images the reference statistics use: all (None), or a seeded subset in index order.

    A random subset rather than the first N, because a prepared dataset is
    ordered by source path, which often groups similar scenes together.
    """
    if n_reference == 0 or n_reference >= count:
        return None
    return np.sort(np.random.RandomState(seed).permutation(count)[:n_reference])


# The class of each sample of a conditional generator: n -> long [n], entry i the label of latent i of
# fixed_latents(n, ...). A function of n, not a list, because a labelling (class proportions) is laid
# out over the whole sample count.
SampleLabels = Callable[[int], torch.Tensor]


class SeededGenerator(GenerativeModelBase):
    """A generator as torch-fidelity's input: z ~ N(0, I) in, uint8 images out (ganlib.models.sampling.to_uint8).

    Evaluation feeds it latents from ganlib.models.sampling.fixed_latents
    (features.generator_features); torch-fidelity's calculate_metrics, given
    the same seed, draws the very same latents from its "normal" noise source.

    A class-conditional generator is given `sample_labels`: generator_features
    then asks labels_for(n) once and hands each batch its slice with its
    latents, so latent i is drawn as the same class whatever the batch size.
    (torch-fidelity's own loop, which knows no such labels, calls forward(z)
    alone; a conditional generator then picks classes itself.)
    """

    def __init__(self, generator: nn.Module, z_dim: int, resolution: int, sample_labels: SampleLabels | None = None):
        super().__init__()
        # Held outside nn.Module's registry on purpose: torch-fidelity calls
        # .cuda() on its input, which would move the caller's generator (for
        # example training's EMA copy) in place. Latents go to the generator's
        # device instead, and images come back to torch-fidelity's.
        self._generator_box = [generator]
        self._z_dim = int(z_dim)
        self.resolution = int(resolution)
        self._sample_labels = sample_labels

    @property
    def z_size(self):
        return self._z_dim

    @property
    def z_type(self):
        return "normal"

    @property
    def num_classes(self):
        return 0

    def labels_for(self, n: int) -> torch.Tensor | None:
        """The class label of each of the first n latents (long [n]); None for a generator given no labels."""
        if self._sample_labels is None:
            return None
        labels = torch.as_tensor(self._sample_labels(n), dtype=torch.long)
        if labels.shape != (n,):
            raise EvaluationError(f"sample labels of shape {tuple(labels.shape)} for {n} samples")
        return labels

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        generator = self._generator_box[0]
        device = next(generator.parameters(), z).device
        with torch.no_grad():
            if labels is None:
                images = generator(z.to(device))
            else:
                images = generator(z.to(device), labels.to(device=device, dtype=torch.long))
        expected = (z.shape[0], 3, self.resolution, self.resolution)
        if tuple(images.shape) != expected:
            raise EvaluationError(f"generator returned shape {tuple(images.shape)}, expected {expected}")
        if not torch.isfinite(images).all():
            raise EvaluationError("generator produced NaN/inf pixels (diverged training?); refusing to score them")
        return to_uint8(images).to(z.device)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run `module` in eval mode, then give it back in the mode it had (training calls this mid-run)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
