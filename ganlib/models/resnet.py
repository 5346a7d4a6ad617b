"""SNGAN-style ResNet generator and discriminator (Miyato et al. 2018) for 32 to 256 px.

G: linear to 4x4, residual up-blocks (BatchNorm, ReLU, nearest 2x, 3x3 convs),
BatchNorm + ReLU + 3x3 conv + tanh. D: residual down-blocks with spectral
normalisation on every weight, ReLU, global sum pooling, a linear head
returning logits. Channel plans follow the paper's (and Mimicry's) 32, 64 and
128 px networks, scaled by `width` (width 64 gives the paper's sizes); the
paper has no 256 px network, so 256 px follows BigGAN's channel plan (Brock et
al. 2019) with these blocks.
Initialisation as in the reference implementations: Xavier-uniform, gain
sqrt(2) for the convolutions inside residual branches and 1 elsewhere.
Class-conditional with n_classes > 0 (ganlib/models/conditioning.py): G's input
linear layer reads z concatenated with a class embedding; D is a projection
discriminator on its pooled features, the embedding spectrally normalised like
every other weight of D.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganlib.models.conditioning import ClassEmbedding, ClassProjection

RESOLUTIONS = (32, 64, 128, 256)

# G: channel multipliers of `width` from the 4x4 end outwards, one block between neighbours.
_G_PLANS = {32: (4, 4, 4, 4), 64: (16, 8, 4, 2, 1), 128: (16, 16, 8, 4, 2, 1), 256: (16, 16, 8, 8, 4, 2, 1)}
# D: (channel multiplier, downsample) per block from the image inwards; the paper's
# CIFAR network stops halving at 8x8, its 64 px one at 2x2, its 128 px one at 4x4.
_D_PLANS = {
    32: ((2, True), (2, True), (2, False), (2, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, True)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
}


def _check(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"ResNet GAN supports resolutions {RESOLUTIONS}, got {resolution}")


def _xavier(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class GeneratorBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1, 1, 0), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """Pre-activation residual block; the first block skips the leading ReLU (SNGAN's 'optimized' block)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool) -> None:
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = spectral_norm(_xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2)))
        self.conv2 = spectral_norm(_xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2)))
        self.learnable_shortcut = downsample or c_in != c_out
        self.shortcut = spectral_norm(_xavier(nn.Conv2d(c_in, c_out, 1, 1, 0), 1.0)) if self.learnable_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return x
        if self.first:  # pool first: the 1x1 conv then runs on 4x fewer pixels
            return self.shortcut(F.avg_pool2d(x, 2))
        x = self.shortcut(x)
        return F.avg_pool2d(x, 2) if self.downsample else x


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        _check(resolution)
        self.z_dim, self.resolution, self.n_classes = z_dim, resolution, n_classes
        channels = [width * m for m in _G_PLANS[resolution]]
        self.c0 = channels[0]
        inputs = z_dim * 2 if n_classes else z_dim  # z and its class embedding (of z's size)
        self.linear = _xavier(nn.Linear(inputs, 4 * 4 * self.c0), 1.0)
        self.blocks = nn.Sequential(*(GeneratorBlock(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.bn = nn.BatchNorm2d(channels[-1])
        self.to_rgb = _xavier(nn.Conv2d(channels[-1], 3, 3, 1, 1), 1.0)
        self.classes = ClassEmbedding(n_classes, z_dim) if n_classes else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes is not None:
            z = self.classes.with_latents(z, labels)
        h = self.linear(z).reshape(z.shape[0], self.c0, 4, 4)
        h = self.blocks(h)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    def __init__(self, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        _check(resolution)
        self.resolution = resolution
        blocks, c_in = [], 3
        for i, (multiplier, downsample) in enumerate(_D_PLANS[resolution]):
            blocks.append(DiscriminatorBlock(c_in, width * multiplier, downsample, first=i == 0))
            c_in = width * multiplier
        self.blocks = nn.Sequential(*blocks)
        self.head = spectral_norm(_xavier(nn.Linear(c_in, 1), 1.0))
        self.classes = ClassProjection(n_classes, c_in, spectral=True) if n_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.blocks(images)).sum(dim=(2, 3))
        logits = self.head(h).reshape(-1)
        return logits if self.classes is None else logits + self.classes(h, labels)
