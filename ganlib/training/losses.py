"""GAN objectives on discriminator logits, and the gradient regularisers.

Every loss takes raw logits (the discriminators have no output activation),
so the non-saturating loss can use the numerically stable softplus form
instead of sigmoid + log. Losses are batch means; regularisers return the
penalty already multiplied by its weight.

The relativistic pairing loss (RpGAN, as used by R3GAN) compares each fake
with the real image it is paired with, so its generator loss needs D's logits
on those reals as well: `GanLoss.pairs_real_in_g` says so, and the generator
update then evaluates D on the paired reals. The other generator losses
ignore the real logits (None).

Gradient penalties under fp16 autocast follow the PyTorch AMP recipe
("Gradient penalty" in the AMP examples): the input gradient is taken of
the *scaled* logits, so that the fp16 gradients flowing back through D do
not underflow to zero, then divided by the scale, and the penalty itself
is computed from it in fp32. `grad_scale` is the GradScaler's current scale
(None without one); when the scaled gradient overflows, the penalty is
non-finite and so are D's gradients, and the scaler skips that step like any
other overflowing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class GanLoss:
    discriminator: Callable[[Tensor, Tensor], Tensor]          # (real logits, fake logits) -> loss
    generator: Callable[[Tensor, Tensor | None], Tensor]       # (fake logits, paired real logits) -> loss
    pairs_real_in_g: bool = False                              # the generator loss reads the real logits


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    # -log sigmoid(real) - log(1 - sigmoid(fake))
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _bce_g(fake: Tensor, real: Tensor | None = None) -> Tensor:
    # Non-saturating: maximise log sigmoid(fake) rather than minimise log(1 - sigmoid(fake)).
    return F.softplus(-fake).mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1.0).square().mean() + fake.square().mean())


def _lsgan_g(fake: Tensor, real: Tensor | None = None) -> Tensor:
    return 0.5 * (fake - 1.0).square().mean()


def _wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _negated_mean(fake: Tensor, real: Tensor | None = None) -> Tensor:
    return -fake.mean()


def _rpgan_d(real: Tensor, fake: Tensor) -> Tensor:
    # Pair i: the real image should score higher than the fake one, log(1 + exp(-(real - fake))).
    return F.softplus(fake - real).mean()


def _rpgan_g(fake: Tensor, real: Tensor | None) -> Tensor:
    if real is None:
        raise ValueError("the rpgan generator loss needs the logits of the paired real images")
    return F.softplus(real - fake).mean()


LOSSES: dict[str, GanLoss] = {
    "bce": GanLoss(_bce_d, _bce_g),
    "hinge": GanLoss(_hinge_d, _negated_mean),
    "lsgan": GanLoss(_lsgan_d, _lsgan_g),
    "wgan-gp": GanLoss(_wasserstein_d, _negated_mean),  # plus gradient_penalty in the D step
    "rpgan": GanLoss(_rpgan_d, _rpgan_g, pairs_real_in_g=True),  # R3GAN: with R1 and R2 (r1_gamma, r2_gamma)
}


def gan_loss(name: str) -> GanLoss:
    if name not in LOSSES:
        raise ValueError(f"train.loss: unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    weight: float,
    generator: torch.Generator | None = None,
    grad_scale: Tensor | float | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)|| - 1)^2] on random interpolates.

    `discriminator` maps images to logits (under autocast if the caller wants it); the
    penalty arithmetic is fp32 whatever the logits' dtype.
    """
    alpha = torch.rand(real.shape[0], *[1] * (real.ndim - 1), device=real.device, generator=generator)
    mixed = torch.lerp(real.detach().float(), fake.detach().float(), alpha).requires_grad_(True)
    grad = _input_gradient(discriminator(mixed), mixed, grad_scale)
    norms = grad.flatten(1).norm(dim=1)
    return weight * (norms - 1.0).square().mean()


def r1_penalty(real_logits: Tensor, real: Tensor, gamma: float, grad_scale: Tensor | float | None = None) -> Tensor:
    """R1 (Mescheder et al. 2018): gamma / 2 * E[||grad D(x)||^2] on real images.

    `real` must require grad and `real_logits` must come from it.
    """
    return _squared_gradient_penalty(real_logits, real, gamma, grad_scale)


def r2_penalty(fake_logits: Tensor, fake: Tensor, gamma: float, grad_scale: Tensor | float | None = None) -> Tensor:
    """R2 (as in R3GAN): R1's gamma / 2 * E[||grad D(x)||^2] taken on generated images instead.

    `fake` must require grad (a detached copy: the penalty is D's, not G's) and `fake_logits` must come from it.
    """
    return _squared_gradient_penalty(fake_logits, fake, gamma, grad_scale)


def _squared_gradient_penalty(logits: Tensor, images: Tensor, gamma: float, grad_scale: Tensor | float | None) -> Tensor:
    grad = _input_gradient(logits, images, grad_scale)
    return 0.5 * gamma * grad.flatten(1).square().sum(dim=1).mean()


def _input_gradient(logits: Tensor, images: Tensor, grad_scale: Tensor | float | None) -> Tensor:
    """d(sum of logits)/d(images) in fp32, differentiable (double backward), taken at `grad_scale`."""
    total = logits.float().sum()
    if grad_scale is None:
        (grad,) = torch.autograd.grad(total, images, create_graph=True)
        return grad.float()
    (scaled,) = torch.autograd.grad(total * grad_scale, images, create_graph=True)
    return scaled.float() / grad_scale
