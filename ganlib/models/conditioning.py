"""Class conditioning shared by the architectures: a class embedding for G, a projection for D.

Generator: the class embedding (dimension z_dim) is concatenated with z, so the
class enters where z does: DCGAN's first transposed convolution, the ResNet's
input linear layer, R3GAN's modulation of its constant input. A generator
called without labels draws class i mod C for the i-th latent of the batch
(class-balanced batches), so code that only knows z (EMA recalibration, the
FID curve, the overall FID) samples every class equally.

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
