"""When a run has diverged although every loss stayed finite.

A learning rate far too high does not always produce NaN: the discriminator
wins outright, its loss sits at 0 and the generator's climbs to 1e14, every
number finite, and the run would finish and be published. No healthy run
shows a mean loss that large: for the bounded-margin losses (bce, hinge,
lsgan, rpgan) a mean generator loss of 1e4 means the discriminator's logits
on fakes are around -1e4, saturated beyond any gradient; WGAN-GP's critic
values are unbounded but grow to 1e6 only when training has blown up. One
tick can be a spike, so the rule asks for DIVERGED_TICKS ticks in a row; the
count is part of the checkpointed progress, so a resume does not reset it.
"""

from __future__ import annotations

DIVERGED_TICKS = 3                       # consecutive ticks over the bound before the run is stopped
DIVERGED_MEAN_LOSS = {"wgan-gp": 1e6}    # |mean loss| of a tick that no healthy run reaches, by train.loss ...
DEFAULT_DIVERGED_MEAN_LOSS = 1e4         # ... and for the bounded-margin losses


def diverged_loss(losses: dict[str, float], loss: str) -> str | None:
    """Which tick mean is beyond the bound for `loss` ("loss_g 2.4e+14 > 1e+04"), or None."""
    bound = DIVERGED_MEAN_LOSS.get(loss, DEFAULT_DIVERGED_MEAN_LOSS)
    for name in ("loss_d", "loss_g"):
        value = losses.get(name)
        if value is not None and abs(value) > bound:
            return f"{name} {value:.3g} beyond {bound:.0e}"
    return None
