"""Exponential moving average of the generator's weights (Karras et al.).

Samples and evaluation use the averaged generator: it is markedly smoother
than the raw one at no training cost. The decay is specified as a half-life
in images shown, so it means the same thing at any batch size.

BatchNorm: only the weights are averaged. The raw generator's running
statistics describe the raw generator's activations, not the averaged
network's, so G_ema does not take them; instead, before G_ema is sampled or
saved (every training tick), `recalibrate_batchnorm_` recomputes its running
statistics from its own activations: RECALIBRATION_LATENTS fixed latents
(`recalibration_latents`), in batches of `train.microbatch`, averaged with
equal weight per batch (BatchNorm's momentum=None). The result depends only
on G_ema's weights and the seed, so a resumed run stays bit-exact on CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from ganlib.models.sampling import fixed_latents

# Latents whose G_ema activations define its BatchNorm statistics: enough that the estimate's
# noise is far below a tick's change of weights, few enough to cost a fraction of a tick.
RECALIBRATION_LATENTS = 1024
# Keeps these latents apart from the sample grid's and evaluation's (fixed_latents of the seed itself).
_RECALIBRATION_STREAM = 0xB7


def ema_beta(batch_size: int, images_seen: int, halflife_kimg: float, rampup: float) -> float:
    """Per-step decay so the old average halves every `halflife_kimg` thousand images.

    With a ramp-up, the half-life is at most `rampup` times the images seen so
    far: early in training the average would otherwise be dominated by the
    random initial weights.
    """
    halflife_images = halflife_kimg * 1000
    if rampup > 0:
        halflife_images = min(halflife_images, images_seen * rampup)
    if halflife_images <= 0:
        return 0.0
    return 0.5 ** (batch_size / halflife_images)


def make_ema(generator: nn.Module) -> nn.Module:
    """A frozen copy of the generator in eval mode, to be updated with update_ema."""
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * generator, parameters only (buffers: see recalibrate_batchnorm_)."""
    ema_params = list(ema.parameters())
    params = [p.detach() for p in generator.parameters()]
    if beta == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)


def recalibration_latents(z_dim: int, seed: int) -> torch.Tensor:
    """The RECALIBRATION_LATENTS fixed latents (CPU float32) that recalibrate G_ema's BatchNorm for `seed`."""
    stream_seed = int(np.random.SeedSequence([seed, _RECALIBRATION_STREAM]).generate_state(1)[0])
    return fixed_latents(RECALIBRATION_LATENTS, z_dim, stream_seed)


def recalibrate_batchnorm_(generator: nn.Module, latents: torch.Tensor, batch_size: int) -> None:
    """Set every BatchNorm's running mean/var to the mean over batches of `generator`'s own batch statistics.

    torch.optim.swa_utils.update_bn does exactly this (the same problem for weight averaging,
    SWA): it resets the statistics, forwards the batches in train mode with momentum=None,
    so each batch counts equally, and restores the mode and momenta. Without BatchNorm: a no-op.
    """
    device = next(generator.parameters()).device
    update_bn(latents.split(batch_size), generator, device)
