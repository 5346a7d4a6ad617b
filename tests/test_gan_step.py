"""GanStep on every loss, both architectures, several D steps and each autocast precision (CPU).

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
    if cfg.loss == "wgan-gp" or cfg.r1_gamma > 0:
        assert totals["penalty"] > 0, totals
    if cfg.precision == "fp16":
        assert totals["skipped_steps"] < ITERATIONS * (cfg.d_steps + 1), totals  # some steps were taken
    for name, module, before in (("G", nets.G, g_before), ("D", nets.D, d_before)):
        assert all(torch.isfinite(p).all() for p in module.parameters()), name
        # Every weight matrix/kernel moved. (Not every bias need: the Wasserstein loss is blind to D's output bias.)
        unchanged = [key for key, p in module.named_parameters() if p.ndim > 1 and torch.equal(p, before[key])]
        assert not unchanged, f"{name}: weights that no step moved: {unchanged}"
