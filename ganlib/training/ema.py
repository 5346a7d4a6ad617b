"""Exponential moving average of the generator's weights (Karras et al.).

Samples and evaluation use the averaged generator: it is markedly smoother
than the raw one at no training cost. The decay is specified as a half-life
in images shown, so it means the same thing at any batch size.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


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
    """ema <- beta * ema + (1 - beta) * generator; buffers (BatchNorm statistics) are copied."""
    ema_params = list(ema.parameters())
    params = [p.detach() for p in generator.parameters()]
    if beta == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), generator.buffers()):
        ema_buffer.copy_(buffer)
