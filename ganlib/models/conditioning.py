"""Class conditioning shared by the architectures: how G is told the class, and D's projection.

Generator, two ways, by architecture:
- DCGAN: conditional BatchNorm (ClassBatchNorm2d; de Vries et al. 2017, as
  in the generator of Miyato & Koyama's projection GAN): every BatchNorm's
  scale and shift are looked up per class, so the class reaches every layer
  and z keeps the first layer to itself. Measured on the demo's data
  (BENCHMARKS.md, "Class conditioning"): a class embedding concatenated with
  z instead collapsed each class to nearly one image against this
  discriminator, and scored far worse than an unconditional model; conditional
  BatchNorm scored better than the unconditional model, with as much variety
  within a class as the real images have.
- ResNet and R3GAN: a class embedding (dimension z_dim) concatenated with z
  where z enters: the ResNet's input linear layer, R3GAN's modulation of its
  constant input.
A generator called without labels draws class i mod C for the i-th latent of
the batch (class-balanced batches), so code that only knows z (EMA
recalibration, the FID curve, the overall FID) samples every class equally.

Discriminator: the projection discriminator (Miyato & Koyama, ICLR 2018): the
logit of an image x of class y is head(phi(x)) + <embed(y), phi(x)>, with phi(x)
the pooled features the head reads. A conditional discriminator must be told
the class of every image.

A network with n_classes = 0 has none of these modules, so an unconditional
model's parameters, initialisation and output are exactly what they were.
"""

from __future__ import annotations

import torch
from torch import nn


def batch_labels(labels: torch.Tensor | None, batch: int, n_classes: int, device: torch.device) -> torch.Tensor:
    """`labels` checked against the batch, or the class-balanced default i mod n_classes."""
    if labels is None:
        return torch.arange(batch, device=device) % n_classes
    if labels.shape != (batch,):
        raise ValueError(f"expected one class label per latent ({batch}), got labels of shape {tuple(labels.shape)}")
    return labels.to(device=device, dtype=torch.long)


class ClassEmbedding(nn.Module):
    """Class -> a learned vector that the generator concatenates with z."""

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.embedding = nn.Embedding(n_classes, dim)  # N(0, 1), the scale of z itself

    def with_latents(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        labels = batch_labels(labels, z.shape[0], self.n_classes, z.device)
        return torch.cat([z, self.embedding(labels).to(z.dtype)], dim=1)


class ClassBatchNorm2d(nn.Module):
    """BatchNorm without its own scale and shift, followed by a scale and a shift chosen by the class."""

    def __init__(self, features: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)
        self.gain = nn.Embedding(n_classes, features)
        self.bias = nn.Embedding(n_classes, features)
        # As DCGAN initialises a BatchNorm's scale: near 1, a little apart per class so the classes start apart.
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        gain, bias = self.gain(labels).to(h.dtype), self.bias(labels).to(h.dtype)
        return h * gain[:, :, None, None] + bias[:, :, None, None]


def batch_norm(features: int, n_classes: int) -> nn.Module:
    """A plain BatchNorm2d for an unconditional generator, a ClassBatchNorm2d for a conditional one."""
    return ClassBatchNorm2d(features, n_classes) if n_classes else nn.BatchNorm2d(features)


def normalise(layer: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """`layer(x)`, with the labels when the layer is a ClassBatchNorm2d."""
    return layer(x, labels) if isinstance(layer, ClassBatchNorm2d) else layer(x)


class ClassProjection(nn.Module):
    """<embed(y), phi(x)>: the class term a projection discriminator adds to its logit."""

    def __init__(self, n_classes: int, features: int, spectral: bool = False) -> None:
        super().__init__()
        self.n_classes = n_classes
        embedding = nn.Embedding(n_classes, features)
        nn.init.xavier_uniform_(embedding.weight)
        if spectral:  # the SNGAN discriminator normalises every weight, the class embedding included
            embedding = nn.utils.parametrizations.spectral_norm(embedding)
        self.embedding = embedding

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError(
                f"this discriminator is class-conditional ({self.n_classes} classes): pass each image's class label")
        labels = batch_labels(labels, features.shape[0], self.n_classes, features.device)
        return (self.embedding(labels).to(features.dtype) * features).sum(dim=1)
