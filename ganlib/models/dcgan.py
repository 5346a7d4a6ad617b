"""DCGAN (Radford et al. 2016) generator and discriminator for 32 to 256 px.

At 64 px with width 64 these are exactly the networks of the PyTorch DCGAN
example (ngf = ndf = 64): transposed 4x4 convolutions doubling the side from
4x4, BatchNorm + ReLU in G, strided 4x4 convolutions with LeakyReLU(0.2) and
BatchNorm (not on the first layer) in D. Other resolutions add or drop
doubling stages; channel counts double towards the 4x4 end, as in the paper
(at 256 px that is 32 x width at 4x4: DCGAN was not designed for 256 px and
trains less stably there; r3gan is the recommended architecture).
The discriminator returns logits: the losses apply their own link function.
Class-conditional with n_classes > 0 (ganlib/models/conditioning.py): G's
BatchNorms take their scale and shift from the class (conditional BatchNorm);
D adds a projection of its 4x4 features, sum-pooled, onto the class embedding
to its logit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganlib.models.conditioning import ClassProjection, batch_labels, batch_norm, normalise

RESOLUTIONS = (32, 64, 128, 256)


def _stages(resolution: int) -> int:
    """Number of 2x up/downsampling stages between 4x4 and the image."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN supports resolutions {RESOLUTIONS}, got {resolution}")
    return int(math.log2(resolution)) - 2


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.resolution = resolution
        self.n_classes = n_classes
        stages = _stages(resolution)
        channels = [width * 2 ** (stages - 1 - i) for i in range(stages)]  # e.g. 8w, 4w, 2w, w
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, channels[0], 4, 1, 0, bias=False),
            batch_norm(channels[0], n_classes),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), batch_norm(c_out, n_classes),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = z.reshape(z.shape[0], z.shape[1], 1, 1)
        if not self.n_classes:
            return self.main(x)
        labels = batch_labels(labels, z.shape[0], self.n_classes, z.device)
        for layer in self.main:
            x = normalise(layer, x, labels)
        return x


class DCGANDiscriminator(nn.Module):
    def __init__(self, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        stages = _stages(resolution)
        channels = [width * 2**i for i in range(stages)]  # e.g. w, 2w, 4w, 8w
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        dcgan_init_(self)
        self.classes = ClassProjection(n_classes, channels[-1]) if n_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes is None:
            return self.main(images).reshape(-1)
        features = self.main[:-1](images)  # 4x4; the last layer is the unconditional head
        return self.main[-1](features).reshape(-1) + self.classes(features.sum(dim=(2, 3)), labels)


def dcgan_init_(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), shift 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif isinstance(layer, nn.BatchNorm2d) and layer.affine:  # a ClassBatchNorm2d initialises its own
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
