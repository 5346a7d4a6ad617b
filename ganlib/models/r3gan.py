"""R3GAN-style generator and discriminator (Huang et al., NeurIPS 2024) for 32 to 256 px.

Implemented from the paper's description ("The GAN is dead; long live the
GAN! A Modern GAN Baseline"), not from its code. Both networks are stacks of
residual blocks with no normalisation layers: a 1x1 convolution expanding the
channels by EXPANSION, a grouped 3x3 convolution (GROUP_CHANNELS channels per
group), a 1x1 convolution back, LeakyReLU(0.2) between them. Without
normalisation, stability at initialisation comes from fix-up initialisation:
the last convolution of every residual branch starts at zero, so each block
starts as the identity, and the branch's other convolutions are scaled by
L^(-1/(2m-2)) (L residual blocks in the network, m = 3 convolutions per
branch), so that the variance the branches add stays bounded as they learn.

Stages are joined by low-pass filtered resampling (a fixed separable [1, 2, 1]
binomial filter around nearest-neighbour upsampling or stride-2 subsampling)
and a 1x1 convolution where the channel count changes. G starts from a
learned 4x4 constant modulated channel-wise by a linear map of z and ends in
a 1x1 convolution to RGB and tanh (every generator here outputs [-1, 1]);
D starts with a 1x1 convolution from RGB and ends, at 4x4, in a depthwise
4x4 convolution and a linear layer to one logit.
Class-conditional with n_classes > 0 (ganlib/models/conditioning.py): the
modulation of G's constant reads z concatenated with a class embedding; D is a
projection discriminator on the features its head reads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlib.models.conditioning import ClassEmbedding, ClassProjection

RESOLUTIONS = (32, 64, 128, 256)

EXPANSION = 2            # hidden channels of a residual branch = EXPANSION * block channels
GROUP_CHANNELS = 16      # channels per group of the 3x3 convolution (fewer when a branch is narrower)
BLOCKS_PER_STAGE = 1     # residual blocks at each resolution
MAX_MULTIPLIER = 16      # channels double per halving of the resolution, up to MAX_MULTIPLIER * width
BRANCH_CONVS = 3         # m in the fix-up scaling L^(-1/(2m-2))
LEAKY_SLOPE = 0.2

# The normalised binomial low-pass filter applied around every resampling.
_BINOMIAL = (1.0, 2.0, 1.0)


def _check(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"R3GAN supports resolutions {RESOLUTIONS}, got {resolution}")


def stage_channels(width: int, resolution: int) -> list[int]:
    """Channels at each resolution from 4x4 up to `resolution` (width at full size, doubling per halving)."""
    _check(resolution)
    halvings = int(math.log2(resolution // 4))
    return [width * min(2 ** (halvings - i), MAX_MULTIPLIER) for i in range(halvings + 1)]


def _he_init(conv: nn.Module, gain_scale: float = 1.0, leaky: bool = True) -> nn.Module:
    # He initialisation for what follows (LeakyReLU, or nothing), times the fix-up factor.
    nonlinearity = "leaky_relu" if leaky else "linear"
    nn.init.kaiming_normal_(conv.weight, a=LEAKY_SLOPE, nonlinearity=nonlinearity)
    with torch.no_grad():
        conv.weight.mul_(gain_scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ResidualBlock(nn.Module):
    """x + project(act(grouped3x3(act(expand(x))))); `project` starts at zero, so the block starts as x."""

    def __init__(self, channels: int, total_blocks: int) -> None:
        super().__init__()
        hidden = channels * EXPANSION
        groups = hidden // math.gcd(hidden, GROUP_CHANNELS)
        fixup = total_blocks ** (-1.0 / (2 * BRANCH_CONVS - 2))
        self.expand = _he_init(nn.Conv2d(channels, hidden, 1), fixup)
        self.spatial = _he_init(nn.Conv2d(hidden, hidden, 3, padding=1, groups=groups), fixup)
        # No bias: at zero it would be the only thing the branch adds, breaking the identity start.
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        nn.init.zeros_(self.project.weight)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.expand(x), LEAKY_SLOPE)
        h = F.leaky_relu(self.spatial(h), LEAKY_SLOPE)
        return self.project(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class _Blur(nn.Module):
    """Depthwise separable [1, 2, 1] / 4 low-pass filter, edges replicated (no darkened border)."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor(_BINOMIAL)
        kernel = torch.outer(taps, taps) / taps.sum() ** 2
        # Not persistent: a fixed constant, rebuilt with the module, not a weight to save.
        self.register_buffer("kernel", kernel[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)


class Upsample(nn.Module):
    """1x1 channel change at the low resolution (cheaper), nearest 2x, then the low-pass filter."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.channels = _he_init(nn.Conv2d(c_in, c_out, 1, bias=False), leaky=False) if c_in != c_out else None
        self.blur = _Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None:
            x = self.channels(x)
        return self.blur(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    """The low-pass filter, stride-2 subsampling, then a 1x1 channel change at the low resolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.blur = _Blur()
        self.channels = _he_init(nn.Conv2d(c_in, c_out, 1, bias=False), leaky=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blur(x)[:, :, ::2, ::2]
        return self.channels(x) if self.channels is not None else x


def _stages(channels: list[int], resample: type[nn.Module]) -> nn.Sequential:
    """BLOCKS_PER_STAGE residual blocks per resolution, joined by `resample(in_channels, out_channels)`."""
    total_blocks = BLOCKS_PER_STAGE * len(channels)  # the fix-up scaling counts every block of the network
    layers: list[nn.Module] = []
    for i, c in enumerate(channels):
        if i > 0:
            layers.append(resample(channels[i - 1], c))
        layers += [ResidualBlock(c, total_blocks) for _ in range(BLOCKS_PER_STAGE)]
    return nn.Sequential(*layers)


class R3GANGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.n_classes = z_dim, resolution, n_classes
        channels = stage_channels(width, resolution)
        self.constant = nn.Parameter(torch.randn(channels[0], 4, 4))
        inputs = z_dim * 2 if n_classes else z_dim  # z and its class embedding (of z's size)
        self.modulation = _he_init(nn.Linear(inputs, channels[0], bias=False), leaky=False)
        self.stages = _stages(channels, Upsample)
        self.to_rgb = _he_init(nn.Conv2d(channels[-1], 3, 1), leaky=False)
        self.classes = ClassEmbedding(n_classes, z_dim) if n_classes else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes is not None:
            z = self.classes.with_latents(z, labels)
        h = self.constant[None] * self.modulation(z)[:, :, None, None]
        return torch.tanh(self.to_rgb(self.stages(h)))


class R3GANDiscriminator(nn.Module):
    def __init__(self, width: int, resolution: int, n_classes: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        channels = stage_channels(width, resolution)[::-1]  # from the image inwards
        self.from_rgb = _he_init(nn.Conv2d(3, channels[0], 1))
        self.stages = _stages(channels, Downsample)
        # At 4x4: a learned spatial basis per channel (depthwise 4x4), then one logit.
        self.basis = _he_init(nn.Conv2d(channels[-1], channels[-1], 4, groups=channels[-1], bias=False), leaky=False)
        self.head = _he_init(nn.Linear(channels[-1], 1), leaky=False)
        self.classes = ClassProjection(n_classes, channels[-1]) if n_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stages(F.leaky_relu(self.from_rgb(images), LEAKY_SLOPE))
        features = self.basis(h).flatten(1)
        logits = self.head(features).reshape(-1)
        return logits if self.classes is None else logits + self.classes(features, labels)
