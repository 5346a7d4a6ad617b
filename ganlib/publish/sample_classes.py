"""The class of each gallery sample of a class-conditional generator: the one evaluation drew it as.

Evaluation labels a conditional generator's samples in the data's class
proportions, laid out over its evaluate.n_samples samples
(ganlib.metrics.per_class.sample_labelling). The gallery draws its samples and
the memorisation check's closest pairs with the same labels, so that sample i
of the gallery is the image evaluation measured as sample i (publish.seed equal
to evaluate.seed, and no more gallery samples than evaluated ones), and a
closest pair shows the very sample that was found near a training image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ganlib.data.dataset import PreparedDataset
from ganlib.metrics.sample_labels import sample_labelling


@dataclass(frozen=True)
class EvaluationLabels:
    classes: tuple[str, ...]     # the generator's
    dataset: PreparedDataset     # whose class proportions evaluation drew in
    evaluated: int               # evaluate.n_samples: the labelling is laid out over that many samples

    def first(self, n: int, seed: int) -> torch.Tensor:
        """The labels of samples 0 .. n-1 of `seed`."""
        return sample_labelling(self.classes, self.dataset, seed)(max(self.evaluated, n))[:n]

    def of(self, indices: Sequence[int], n_samples: int, seed: int) -> torch.Tensor:
        """The labels of the samples `indices` of a run of n_samples with `seed` (e.g. memorisation.json's)."""
        return sample_labelling(self.classes, self.dataset, seed)(n_samples)[list(indices)]

    def name(self, label: int) -> str:
        return self.classes[label]
