"""Which class each generated image is, for a class-conditional generator (`scenegan generate --class`).

    image_plan(requested, classes, first_seed, n) -> ImagePlan

    --class NAME   every image is class NAME;
    --class all    every seed once per class (n images of each class, the same latents across classes);
    no --class     the image of seed s is class s mod C (tied to the seed like its latent, so image i of
                   seed S is still image 0 of seed S + i).
An unconditional generator takes no --class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ganlib.generation.sampler import GenerationError, seed_classes

ALL_CLASSES = "all"


@dataclass(frozen=True)
class ImagePlan:
    seeds: list[int]             # one per image, in output order
    labels: torch.Tensor | None  # long, one per image; None for an unconditional generator
    class_names: list[str | None]
    how: str                     # the choice in words, for the manifest


def image_plan(requested: str | None, classes: tuple[str, ...], first_seed: int, n: int) -> ImagePlan:
    """The seeds and classes of the images to make; a GenerationError naming --class when it cannot be met."""
    seeds = list(range(first_seed, first_seed + n))
    if not classes:
        if requested is not None:
            raise GenerationError(f"--class {requested}: this generator is unconditional (it was trained without "
                                  "class labels), so it has no classes to choose from; leave --class out")
        return ImagePlan(seeds, None, [None] * n, "unconditional")
    if requested is None:
        labels = seed_classes(first_seed, n, len(classes))
        return ImagePlan(seeds, labels, [classes[i] for i in labels.tolist()], "the image of seed s is class s mod C")
    if requested == ALL_CLASSES:
        labels = torch.arange(len(classes)).repeat_interleave(n)
        return ImagePlan(seeds * len(classes), labels, [classes[i] for i in labels.tolist()],
                         "every seed once per class")
    return ImagePlan(seeds, torch.full((n,), class_label(requested, classes)), [requested] * n, f"class {requested}")


def class_label(name: str, classes: tuple[str, ...]) -> int:
    """The label of class `name`; a GenerationError listing the generator's classes when it has none of that name."""
    if name not in classes:
        raise GenerationError(f"--class {name}: the generator has no such class; its classes are "
                              f"{', '.join(classes)} (or --class {ALL_CLASSES})")
    return classes.index(name)
