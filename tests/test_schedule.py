"""Cosine schedules of lr, Adam beta2, R1/R2 gamma, EMA half-life and augment_p: values, config checks, resume."""

from __future__ import annotations

import pytest
import torch
from train_support import one_thread, tiny_params

from ganlib.config import ParamsError
from ganlib.io.source import CodeDigest
from ganlib.training.checkpoint import run_identity
from ganlib.training.distributed import SINGLE_PROCESS
from ganlib.training.schedule import cosine_ramp, scheduled_values
from ganlib.training.step import GanStep, build_networks

CODE = CodeDigest("c" * 64, {})  # a stand-in training code digest

COSINE = ("train.schedule=cosine", "train.kimg=1", "train.lr_end_fraction=0.1", "train.betas=[0.0,0.9]",
          "train.beta2_end=0.99", "train.gamma_end_fraction=0.2", "train.ema_halflife_kimg=0.5",
          "train.ema_halflife_end_kimg=2.5", "train.diffaugment=[color,translation]", "train.augment_p=0",
          "train.augment_p_end=0.4")


def test_cosine_values_at_start_middle_and_end():
    cfg = tiny_params(*COSINE).train
    start, middle, end = (scheduled_values(cfg, images) for images in (0, 500, 1000))
    assert (start.lr_scale, start.beta2, start.gamma_scale, start.ema_halflife_kimg, start.augment_p) == (1.0, 0.9, 1.0, 0.5, 0)
    assert middle.lr_scale == pytest.approx(0.55) and middle.beta2 == pytest.approx(0.945)
    assert middle.gamma_scale == pytest.approx(0.6) and middle.ema_halflife_kimg == pytest.approx(1.5)
    assert middle.augment_p == pytest.approx(0.2) and end.augment_p == pytest.approx(0.4)
    assert end.lr_scale == pytest.approx(0.1) and end.beta2 == pytest.approx(0.99)
    assert end.gamma_scale == pytest.approx(0.2) and end.ema_halflife_kimg == pytest.approx(2.5)
    assert scheduled_values(cfg, 5000) == end  # past the end (a probe, a rounding): the end values
    # A quarter of the way: half a cosine is slow at the ends, 1 - cos(pi/4) over 2 = 0.146 of the way.
    assert scheduled_values(cfg, 250).lr_scale == pytest.approx(1 - 0.9 * (1 - 2**-0.5) / 2)
    assert cosine_ramp(-1.0) == 0.0 and cosine_ramp(0.5) == pytest.approx(0.5) and cosine_ramp(1.0) == 1.0


def test_null_end_values_keep_the_start_and_constant_keeps_everything():
    cfg = tiny_params("train.schedule=cosine", "train.lr_end_fraction=0.5").train
    end = scheduled_values(cfg, int(cfg.kimg * 1000))
    assert end.beta2 == cfg.betas[1] and end.ema_halflife_kimg == cfg.ema_halflife_kimg and end.lr_scale == 0.5
    constant = tiny_params().train
    assert scheduled_values(constant, 0) == scheduled_values(constant, 10**9)
    assert scheduled_values(constant, 0).lr_scale == 1.0


@pytest.mark.parametrize("override", ["train.lr_end_fraction=0.1", "train.beta2_end=0.99",
                                      "train.gamma_end_fraction=0", "train.ema_halflife_end_kimg=3",
                                      "train.augment_p_end=0.3"])
def test_end_values_without_a_cosine_schedule_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(ParamsError, match=rf"train\.schedule: constant ignores {key}"):
        tiny_params(override, "train.diffaugment=[color]")


@pytest.mark.parametrize(("overrides", "named"), [
    (("train.augment_p=0.5",), r"train\.augment_p / augment_p_end set, but train\.diffaugment is empty"),
    (("train.diffaugment=[color]", "train.augment_p=0"), r"train\.diffaugment: \['color'\] is never applied"),
])
def test_augmentation_probability_without_augmentations_or_never_applied_is_refused(overrides, named):
    with pytest.raises(ParamsError, match=named):
        tiny_params(*overrides)


def test_beta2_end_must_be_a_valid_beta():
    with pytest.raises(ParamsError, match=r"train\.beta2_end"):
        tiny_params("train.schedule=cosine", "train.beta2_end=1.0")


def test_under_cosine_the_schedule_length_is_part_of_the_run_and_kimg_alone_is_not():
    def fingerprint(*overrides: str) -> str:
        return run_identity(tiny_params(*overrides), "d" * 64, CODE).fingerprint

    assert fingerprint("train.kimg=1") == fingerprint("train.kimg=2")
    # schedule_kimg null follows kimg: another kimg is another schedule, another run...
    assert fingerprint(*COSINE, "train.kimg=1") != fingerprint(*COSINE, "train.kimg=2")
    # ...and written out it is the same run as the null it stands for.
    assert fingerprint(*COSINE, "train.kimg=1") == fingerprint(*COSINE, "train.kimg=1", "train.schedule_kimg=1")
    # A fixed schedule: a longer run is the same run, continued.
    assert fingerprint(*COSINE, "train.kimg=1", "train.schedule_kimg=1") == \
        fingerprint(*COSINE, "train.kimg=3", "train.schedule_kimg=1")
    assert fingerprint(*COSINE, "train.schedule_kimg=1") != fingerprint(*COSINE, "train.schedule_kimg=2")


def test_after_the_schedule_the_end_values_hold():
    cfg = tiny_params(*COSINE, "train.kimg=3", "train.schedule_kimg=1").train
    end = scheduled_values(cfg, 1000)
    assert scheduled_values(cfg, 500).lr_scale == pytest.approx(0.55)  # halfway through 1 kimg, not 3
    assert scheduled_values(cfg, 2000) == scheduled_values(cfg, 3000) == end
    assert end.lr_scale == pytest.approx(0.1)


def test_schedule_kimg_needs_a_cosine_schedule():
    with pytest.raises(ParamsError, match=r"schedule_kimg"):
        tiny_params("train.schedule=constant", "train.schedule_kimg=2")


@pytest.mark.usefixtures(one_thread.__name__)
def test_the_step_applies_the_schedule_and_resumes_bit_for_bit():
    cfg = tiny_params(*COSINE, "train.arch=r3gan", "train.loss=rpgan", "train.g_width=4", "train.d_width=4",
                      "train.batch_size=8", "train.microbatch=8", "train.kimg=0.032", "train.r1_gamma=1",
                      "train.r2_gamma=1", "train.r1_interval=1").train
    device = torch.device("cpu")

    def run(step: GanStep, iterations: range) -> None:
        for iteration in iterations:
            images = torch.Generator().manual_seed(iteration)
            reals = [[torch.rand(8, 3, 32, 32, generator=images) * 2 - 1]]
            step.run(iteration, reals, images_seen=(iteration + 1) * 8)

    straight = build_networks(cfg, 32, device, seed=0)
    step = GanStep(straight, cfg, seed=0, device=device, world=SINGLE_PROCESS)
    run(step, range(4))
    # The last iteration (images 24..32 of 32) ran with the values at 24 images shown.
    at_24 = scheduled_values(cfg, 24)
    assert straight.opt_d.param_groups[0]["lr"] == cfg.lr_d * at_24.lr_scale
    assert straight.opt_g.param_groups[0]["betas"] == (0.0, at_24.beta2) and step.gamma_scale == at_24.gamma_scale
    assert step.augment_p == at_24.augment_p > 0

    first = build_networks(cfg, 32, device, seed=0)
    run(GanStep(first, cfg, seed=0, device=device, world=SINGLE_PROCESS), range(2))
    resumed = build_networks(cfg, 32, device, seed=0)
    resumed.load_state_dict(first.state_dict())
    run(GanStep(resumed, cfg, seed=0, device=device, world=SINGLE_PROCESS), range(2, 4))
    for key in ("G", "D", "G_ema"):
        a, b = getattr(straight, key).state_dict(), getattr(resumed, key).state_dict()
        assert all(torch.equal(a[name], b[name]) for name in a), key
