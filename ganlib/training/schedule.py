"""Hyperparameter schedules over a run: learning rate, Adam beta2, R1/R2 gamma, EMA half-life, augmentation.

R3GAN anneals these over training with a cosine. Here `train.schedule:
cosine` moves each from its start value (lr_g/lr_d, betas[1], r1_gamma and
r2_gamma, ema_halflife_kimg, augment_p) to its end value along half a cosine of the
schedule's progress: the images shown so far over the images of the schedule
(train.schedule_kimg, by default train.kimg); past its end the end values
hold, so a run made longer (a larger kimg, the same schedule_kimg) goes on
at its end values, as R3GAN does. The values are a pure function of the
images shown, which the step counter determines, so a resumed run sees
exactly the values an uninterrupted one did. `constant` keeps the start
values throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ganlib.config import TrainParams


@dataclass(frozen=True)
class Scheduled:
    """The values of one iteration."""

    lr_scale: float             # times lr_g and lr_d
    beta2: float                # Adam's second-moment decay
    gamma_scale: float          # times r1_gamma and r2_gamma
    ema_halflife_kimg: float
    augment_p: float            # chance that each discriminator input is augmented


def cosine_ramp(progress: float) -> float:
    """0 at progress 0, 1 at progress 1 (and beyond), half a cosine in between."""
    clamped = min(max(progress, 0.0), 1.0)
    return 0.5 * (1.0 - math.cos(math.pi * clamped))


def scheduled_values(cfg: TrainParams, images_shown: int) -> Scheduled:
    """The scheduled values after `images_shown` real images (before the iteration that shows more)."""
    start = Scheduled(1.0, cfg.betas[1], 1.0, cfg.ema_halflife_kimg, cfg.augment_p)
    if cfg.schedule == "constant":
        return start
    end = Scheduled(
        cfg.lr_end_fraction,
        cfg.beta2_end if cfg.beta2_end is not None else cfg.betas[1],
        cfg.gamma_end_fraction,
        cfg.ema_halflife_end_kimg if cfg.ema_halflife_end_kimg is not None else cfg.ema_halflife_kimg,
        cfg.augment_p_end if cfg.augment_p_end is not None else cfg.augment_p,
    )
    t = cosine_ramp(images_shown / (cfg.schedule_length_kimg * 1000))
    return Scheduled(
        lr_scale=_lerp(start.lr_scale, end.lr_scale, t),
        beta2=_lerp(start.beta2, end.beta2, t),
        gamma_scale=_lerp(start.gamma_scale, end.gamma_scale, t),
        ema_halflife_kimg=_lerp(start.ema_halflife_kimg, end.ema_halflife_kimg, t),
        augment_p=_lerp(start.augment_p, end.augment_p, t),
    )


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t
