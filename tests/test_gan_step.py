"""GanStep on every loss, every architecture, several D steps and each autocast precision (CPU).

test_training.py exercises the loop around it with DCGAN + BCE in fp32; here each other
combination trains a few iterations and must keep its losses finite and move both networks.
"""

from __future__ import annotations

import pytest
import torch
from train_support import one_thread, tiny_params

from ganlib.training.distributed import SINGLE_PROCESS
from ganlib.training.step import GanStep, build_networks

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

# The smallest ResNet pair (G 16 channels, D 8) and batch: fp16 convolutions are slow on a CPU.
RESNET = ("train.arch=resnet", "train.g_width=4", "train.d_width=4", "train.batch_size=8", "train.microbatch=8")
R3GAN = ("train.arch=r3gan", "train.g_width=4", "train.d_width=4", "train.batch_size=8", "train.microbatch=8")
CASES = {
    "resnet-hinge": (*RESNET, "train.loss=hinge"),
    "dcgan-lsgan": ("train.loss=lsgan",),
    "resnet-wgan-gp-d_steps-2": (*RESNET, "train.loss=wgan-gp", "train.d_steps=2"),
    "dcgan-bce-d_steps-3-microbatches": ("train.d_steps=3", "train.microbatch=8"),
    "resnet-bce-r1": (*RESNET, "train.r1_gamma=1.0", "train.r1_interval=2"),
    "dcgan-bce-bf16": ("train.precision=bf16",),
    "dcgan-hinge-fp16": ("train.precision=fp16", "train.loss=hinge"),
    # fp16 penalties are taken at the loss scale, which overflows at first: the scaler must back off
    # (skipped steps), not stop the run as a non-finite loss.
    "resnet-wgan-gp-fp16": (*RESNET, "train.loss=wgan-gp", "train.precision=fp16"),
    "resnet-bce-r1-fp16": (*RESNET, "train.r1_gamma=1.0", "train.r1_interval=1", "train.precision=fp16"),
    # The R3GAN recipe: relativistic pairing loss with R1 and R2 of the same weight.
    "r3gan-rpgan-r1-r2": (*R3GAN, "train.loss=rpgan", "train.r1_gamma=0.5", "train.r2_gamma=0.5", "train.r1_interval=1"),
    "r3gan-rpgan-r1-r2-bf16": (*R3GAN, "train.loss=rpgan", "train.r1_gamma=0.5", "train.r2_gamma=0.5",
                               "train.r1_interval=2", "train.precision=bf16"),
    "r3gan-rpgan-r1-r2-fp16": (*R3GAN, "train.loss=rpgan", "train.r1_gamma=0.5", "train.r2_gamma=0.5",
                               "train.r1_interval=1", "train.precision=fp16"),
}
# GradScaler starts at 2**16, which overflows these networks' gradients for the first four or so
# steps (each skipped step halves it); eight iterations leave fp16 room to take real steps.
ITERATIONS = 8


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_a_few_iterations_keep_losses_finite_and_move_both_networks(overrides):
    cfg = tiny_params(*overrides).train
    device = torch.device("cpu")
    nets = build_networks(cfg, 32, device, seed=0)
    g_before, d_before = snapshot(nets.G), snapshot(nets.D)
    step = GanStep(nets, cfg, seed=0, device=device, world=SINGLE_PROCESS)
    images = torch.Generator().manual_seed(1)

    for iteration in range(ITERATIONS):
        reals = [[torch.rand(cfg.microbatch, 3, 32, 32, generator=images) * 2 - 1 for _ in step.my_microbatches()]
                 for _ in range(cfg.d_steps)]
        step.run(iteration, reals, images_seen=(iteration + 1) * cfg.batch_size * cfg.d_steps)

    assert step.nonfinite.first_failure() is None
    totals = step.take_totals()
    assert torch.isfinite(torch.tensor([totals["loss_d"], totals["loss_g"], totals["penalty"]])).all(), totals
    if cfg.loss == "wgan-gp" or cfg.r1_gamma > 0 or cfg.r2_gamma > 0:
        assert totals["penalty"] > 0, totals
    if cfg.precision == "fp16":
        assert totals["skipped_steps"] < ITERATIONS * (cfg.d_steps + 1), totals  # some steps were taken
    for name, module, before in (("G", nets.G, g_before), ("D", nets.D, d_before)):
        assert all(torch.isfinite(p).all() for p in module.parameters()), name
        # Every weight matrix/kernel moved. (Not every bias need: the Wasserstein loss is blind to D's output bias.)
        unchanged = [key for key, p in module.named_parameters() if p.ndim > 1 and torch.equal(p, before[key])]
        assert not unchanged, f"{name}: weights that no step moved: {unchanged}"


def run_iterations(step: GanStep, cfg, iterations: range, seed: int = 1) -> None:
    for iteration in iterations:
        # The reals of each iteration depend on the iteration alone, as the data order does in training.
        images = torch.Generator().manual_seed(seed * 1000 + iteration)
        reals = [[torch.rand(cfg.microbatch, 3, 32, 32, generator=images) * 2 - 1 for _ in step.my_microbatches()]
                 for _ in range(cfg.d_steps)]
        step.run(iteration, reals, images_seen=(iteration + 1) * cfg.batch_size * cfg.d_steps)


def test_rpgan_with_r1_r2_resumes_bit_for_bit():
    # The generator update re-reads the last D update's reals: a restarted step must pair them the same way.
    cfg = tiny_params(*CASES["r3gan-rpgan-r1-r2"], "train.diffaugment=[color,translation]").train
    device = torch.device("cpu")
    straight = build_networks(cfg, 32, device, seed=0)
    run_iterations(GanStep(straight, cfg, seed=0, device=device, world=SINGLE_PROCESS), cfg, range(4))

    first = build_networks(cfg, 32, device, seed=0)
    run_iterations(GanStep(first, cfg, seed=0, device=device, world=SINGLE_PROCESS), cfg, range(2))
    resumed = build_networks(cfg, 32, device, seed=5)  # other initial weights: all overwritten by the state
    resumed.load_state_dict(first.state_dict())
    run_iterations(GanStep(resumed, cfg, seed=0, device=device, world=SINGLE_PROCESS), cfg, range(2, 4))
    for key in ("G", "D", "G_ema"):
        a, b = getattr(straight, key).state_dict(), getattr(resumed, key).state_dict()
        assert all(torch.equal(a[name], b[name]) for name in a), key


@pytest.mark.parametrize("gammas", [("0", "0"), ("0", "2.0"), ("2.0", "0")], ids=["none", "r2-only", "r1-only"])
def test_r2_alone_is_a_penalty_and_none_is_none(gammas):
    r1, r2 = gammas
    cfg = tiny_params(*R3GAN, "train.loss=rpgan", f"train.r1_gamma={r1}", f"train.r2_gamma={r2}",
                      "train.r1_interval=1").train
    device = torch.device("cpu")
    step = GanStep(build_networks(cfg, 32, device, seed=0), cfg, seed=0, device=device, world=SINGLE_PROCESS)
    run_iterations(step, cfg, range(2))
    penalty = step.take_totals()["penalty"]
    assert (penalty > 0) == (gammas != ("0", "0")), penalty
