"""Which class each of a conditional generator's overall samples is drawn as.

    largest_remainder(counts, n)              n samples shared out in proportion to counts (whole numbers)
    proportional_labels(counts, n, seed)      the class of sample i: those shares, laid out by a seeded permutation
    sample_labelling(classes, dataset, seed)  the overall scores' labelling for a generator's classes (None: unconditional)

The overall FID/KID/IS/PRDC compare samples with the whole dataset's
reference statistics, so the samples are drawn in the data's class
proportions: a generator asked for equal shares of a 900-image class and a
300-image one would be measured against a mixture it was never meant to
match. Which sample gets which class is a fixed allotment (largest-remainder
counts, then a permutation seeded with evaluate.seed), so sample i is the same
class in every run, on every machine and for every batch size.

A module of its own (numpy and torch only, no torch-fidelity): the FID curve
during training and the publish stage label samples as evaluation does without
loading the metrics' extractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ganlib.data.dataset import PreparedDataset


# What the report says the overall scores were measured on, for a conditional generator.
PROPORTIONAL = "samples labelled in the data's class proportions"
BALANCED = "samples labelled in equal shares of the generator's classes"


def largest_remainder(counts: Sequence[int], n: int) -> list[int]:
    """n shared out in proportion to `counts`: each share rounded down, the rest one each to the largest remainders.

    Ties go to the earlier class, so the shares are a function of (counts, n) alone. A class with
    count 0 gets nothing.
    """
    total = int(sum(counts))
    if total <= 0:
        raise ValueError(f"class counts {list(counts)} hold no images")
    exact = [n * int(count) / total for count in counts]
    shares = [int(value) for value in exact]
    by_remainder = sorted(range(len(counts)), key=lambda c: (-(exact[c] - shares[c]), c))
    for c in by_remainder[: n - sum(shares)]:
        shares[c] += 1
    return shares


def proportional_labels(counts: Sequence[int], n: int, seed: int) -> np.ndarray:
    """The class index (into `counts`) of each of n samples: largest_remainder's shares in a seeded order.

    Blocks of one class in a row would put whole batches of one class together; a
    permutation spreads them, and being seeded, sample i has the same class everywhere.
    """
    ordered = np.repeat(np.arange(len(counts)), largest_remainder(counts, n))
    return ordered[np.random.RandomState(seed).permutation(n)]


@dataclass(frozen=True)
class SampleLabelling:
    """How a conditional generator's overall samples are labelled: shares of the named classes, seeded order."""

    names: tuple[str, ...]            # the classes drawn (those of the data the generator knows, or all of its own)
    generator_labels: tuple[int, ...]  # each one's label index in the generator
    weights: tuple[int, ...]          # real images per class (data proportions), or 1 each (equal shares)
    seed: int
    how: str                          # PROPORTIONAL or BALANCED
    caveat: str | None = None         # what the labelling leaves out, in words

    def __call__(self, n: int) -> torch.Tensor:
        """The generator label of each of the first n latents (ganlib.metrics.sources.SampleLabels)."""
        classes = proportional_labels(self.weights, n, self.seed)
        return torch.as_tensor(np.asarray(self.generator_labels)[classes], dtype=torch.long)

    def counts(self, n: int) -> dict[str, int]:
        """How many of n samples each class gets."""
        return dict(zip(self.names, largest_remainder(self.weights, n)))

    def description(self, n: int) -> str:
        shares = ", ".join(f"{name} {count}" for name, count in self.counts(n).items())
        text = (f"{self.how} ({shares} of {n}; largest-remainder shares, sample order a permutation "
                f"seeded with evaluate.seed)")
        return text if self.caveat is None else f"{text}; {self.caveat}"


def sample_labelling(generator_classes: Sequence[str], dataset: PreparedDataset, seed: int) -> SampleLabelling | None:
    """The labelling of a generator with `generator_classes` scored against `dataset`; None when unconditional.

    Classes are matched by name, so a generator and a dataset listing them in another order agree.
    Data classes the generator does not know get no samples (it cannot draw them; the overall
    score pays for it against the whole dataset's reference); the caveat says so.
    """
    generator_classes = tuple(generator_classes)
    if not generator_classes:
        return None
    own = {name: index for index, name in enumerate(generator_classes)}
    data_counts = _class_counts(dataset)
    known = [(name, count) for name, count in data_counts.items() if name in own and count > 0]
    if not known:
        why = ("the prepared data has no labels" if not data_counts
               else f"none of the data's classes ({', '.join(data_counts)}) is one of the generator's")
        return SampleLabelling(generator_classes, tuple(range(len(generator_classes))), (1,) * len(generator_classes),
                               seed, BALANCED, why)
    unknown = [f"{name} ({count} images)" for name, count in data_counts.items() if name not in own and count > 0]
    caveat = (f"the generator has no class {', '.join(unknown)} of the data, so draws none of those images"
              if unknown else None)
    return SampleLabelling(tuple(name for name, _ in known), tuple(own[name] for name, _ in known),
                           tuple(count for _, count in known), seed, PROPORTIONAL, caveat)


def _class_counts(dataset: PreparedDataset) -> dict[str, int]:
    """Real images per class name, in the dataset's class order ({} when the data has no labels)."""
    if dataset.labels is None or not dataset.class_names:
        return {}
    counts = np.bincount(np.asarray(dataset.labels), minlength=len(dataset.class_names))
    return {name: int(count) for name, count in zip(dataset.class_names, counts)}
