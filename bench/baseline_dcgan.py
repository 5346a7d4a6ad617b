"""The benchmarks' baseline: a plain DCGAN-64, trained the textbook way in fp32.

Written for this project. It follows the DCGAN recipe of Radford et al. 2016
("Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks") with the settings the PyTorch examples repository uses
for its DCGAN: latent 100, widths 64 for both networks, 3 channels at 64 px,
BatchNorm, N(0, 0.02) weights, BCE loss, Adam(2e-4, betas=(0.5, 0.999)),
batch 64, one D step then one G step per iteration (the non-saturating loss).
Keeping that recipe is what gives the benchmarks' ratios their meaning.

Deliberately plain, so that it measures "a straightforward implementation":
fp32, NCHW, separate BCE on sigmoid outputs, and a host sync every step (the
step reads its losses back as Python floats). Batches are handed over as float
tensors in [-1, 1] already on the device, which favours the baseline: no data
loading or decoding is timed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LATENT_DIM = 100
G_WIDTH = 64
D_WIDTH = 64
IMAGE_CHANNELS = 3
RESOLUTION = 64
BATCH_SIZE = 64
LEARNING_RATE = 2e-4
ADAM_BETAS = (0.5, 0.999)
KERNEL = 4
LEAKY_SLOPE = 0.2
INIT_STD = 0.02


def _feature_widths(width: int) -> list[int]:
    """Channel counts of the four 4x4..32x32 feature maps, from the coarsest: 8w, 4w, 2w, w."""
    return [width * 8, width * 4, width * 2, width]


class BaselineGenerator(nn.Module):
    """Latents [N, latent_dim] -> images [N, 3, 64, 64] in [-1, 1].

    A 4x4 transposed convolution turns the latent (as a 1x1 map) into a 4x4
    map; each further one doubles the side (4 -> 8 -> 16 -> 32 -> 64) while the
    widths halve. It takes flat latents, like every ganlib generator, so the
    evaluation code can sample it directly.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = G_WIDTH, channels: int = IMAGE_CHANNELS) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        previous = latent_dim
        for index, current in enumerate(_feature_widths(width)):
            stride, padding = (1, 0) if index == 0 else (2, 1)  # the first layer grows 1x1 to 4x4
            layers += [
                nn.ConvTranspose2d(previous, current, KERNEL, stride, padding, bias=False),
                nn.BatchNorm2d(current),
                nn.ReLU(inplace=True),
            ]
            previous = current
        layers += [nn.ConvTranspose2d(previous, channels, KERNEL, 2, 1, bias=False), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layers(latents.view(latents.shape[0], self.latent_dim, 1, 1))


class BaselineDiscriminator(nn.Module):
    """Images [N, 3, 64, 64] -> probability of "real" [N].

    The generator's mirror: strided 4x4 convolutions halve the side
    (64 -> 32 -> 16 -> 8 -> 4) while the widths double; BatchNorm on every
    block but the first; a last 4x4 convolution reduces 4x4 to one logit.
    """

    def __init__(self, width: int = D_WIDTH, channels: int = IMAGE_CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = channels
        for index, current in enumerate(reversed(_feature_widths(width))):
            layers.append(nn.Conv2d(previous, current, KERNEL, 2, 1, bias=False))
            if index > 0:  # the recipe leaves the first block without normalisation
                layers.append(nn.BatchNorm2d(current))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
            previous = current
        layers += [nn.Conv2d(previous, 1, KERNEL, 1, 0, bias=False), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).flatten()


def init_recipe_weights(network: nn.Module, rng: torch.Generator) -> None:
    """The recipe's initialisation: convolutions N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, INIT_STD, generator=rng)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, INIT_STD, generator=rng)
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class BaselineStepStats:
    """What one iteration reports: both losses and D's mean output on real and fake batches."""

    d_loss: float
    g_loss: float
    d_on_real: float
    d_on_fake_before_d_update: float
    d_on_fake_after_d_update: float


class BaselineTraining:
    """Both networks, their optimisers, and one training iteration of the recipe.

    `seed` fixes the initial weights and the latent draws through private
    generators, so two instances with one seed train identically and the
    process-wide torch seed is left alone.
    """

    def __init__(self, device: torch.device, seed: int = 0) -> None:
        self.device = device
        init_rng = torch.Generator().manual_seed(seed)
        self.generator = BaselineGenerator()
        self.discriminator = BaselineDiscriminator()
        init_recipe_weights(self.generator, init_rng)
        init_recipe_weights(self.discriminator, init_rng)
        self.generator.to(device)
        self.discriminator.to(device)
        self.latent_rng = torch.Generator(device).manual_seed(seed)
        self.loss = nn.BCELoss()
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS)

    def step(self, real: torch.Tensor) -> BaselineStepStats:
        """One D update (real -> 1, fake -> 0), then one G update on the same fakes (fake -> 1)."""
        batch = real.shape[0]
        latents = torch.randn(batch, LATENT_DIM, device=self.device, generator=self.latent_rng)
        ones = torch.ones(batch, device=self.device, dtype=real.dtype)
        zeros = torch.zeros_like(ones)

        self.d_optimizer.zero_grad()
        on_real = self.discriminator(real)
        d_loss_real = self.loss(on_real, ones)
        d_loss_real.backward()
        fake = self.generator(latents)
        on_fake = self.discriminator(fake.detach())  # D's update must not reach G
        d_loss_fake = self.loss(on_fake, zeros)
        d_loss_fake.backward()
        self.d_optimizer.step()

        # Non-saturating G loss: ask the updated D to call the same fakes real.
        self.g_optimizer.zero_grad()
        on_fake_after = self.discriminator(fake)
        g_loss = self.loss(on_fake_after, ones)
        g_loss.backward()
        self.g_optimizer.step()

        # Reading back as floats syncs the host every step, as a plain training loop does.
        return BaselineStepStats(
            d_loss=(d_loss_real + d_loss_fake).item(),
            g_loss=g_loss.item(),
            d_on_real=on_real.mean().item(),
            d_on_fake_before_d_update=on_fake.mean().item(),
            d_on_fake_after_d_update=on_fake_after.mean().item(),
        )
