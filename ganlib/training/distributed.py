"""Data-parallel training across processes (torchrun): the collectives and the launch command.

With `train.nproc > 1` the training stage runs

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.training \\
        --params params.yaml --root .

(see `torchrun_command`). Every process builds the same networks from the
same seed, takes its own share of each global batch, and after each backward
pass the gradients (and the loss, so that the NaN guard agrees everywhere)
are summed across processes in one flat all-reduce before the optimiser
step. Rank 0 writes checkpoints and outputs: at each tick it does the upkeep
(sample grid, checkpoint, FID curve) while the other ranks wait in a
barrier, and PROCESS_GROUP_TIMEOUT bounds that wait like every other.
Backend: NCCL on CUDA (one GPU per process, LOCAL_RANK), gloo on CPU.

Why an explicit all-reduce instead of wrapping the networks in
torch.nn.parallel.DistributedDataParallel: StyleGAN2-ADA (as released) and
EDM do use DDP, steering it through each phase with no_sync and toggled
requires_grad. DDP all-reduces from hooks that fire during a backward pass
and is built around one forward per backward; a GAN step here runs D
forward several times per backward (real, fake, penalty interpolates),
takes double-backward gradient penalties (R1, WGAN-GP), and back-propagates
G's loss through a frozen D whose parameters get no gradient in that pass.
Each of these is a case to get right under DDP (which passes sync, unused
parameters, buffer broadcasts). Summing the gradients once per optimiser
step, after all microbatches, in one flat all-reduce is the same arithmetic
with none of those cases, at the price of not overlapping communication with
the backward pass; StyleGAN3's training loop does the same.

BatchNorm statistics are per microbatch (`train.microbatch`) in every
process, so a run's result depends on the microbatch size but not on how
many processes share the work: one process doing two microbatches of 32 and
two processes doing one each compute the same step (tests/test_distributed.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = World(rank=0, size=1, local_rank=0)


def world_from_env() -> World:
    """The process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE_PROCESS
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


# How long a collective may wait before the run fails. Explicit because the defaults differ by backend
# (NCCL 10 min, gloo 30 min) and because the other ranks wait in a barrier while rank 0 does a tick's
# upkeep (checkpoint, sample grid, FID curve, whose first measurement also computes the reference
# statistics): that must fit, while a rank that has truly hung should not hold the others for hours.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


def process_group_options(device: torch.device) -> dict:
    """Keyword arguments of torch.distributed.init_process_group for training on `device`."""
    return {"backend": "nccl" if device.type == "cuda" else "gloo", "timeout": PROCESS_GROUP_TIMEOUT}


def init_process_group(world: World, device: torch.device) -> None:
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group(**process_group_options(device))


def all_reduce_sum_(tensor: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


@torch.no_grad()
def broadcast_module_(module: nn.Module, world: World) -> None:
    """Make every process hold rank 0's parameters and buffers."""
    if world.size > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def broadcast_object(value: Any, world: World) -> Any:
    """Rank 0's `value` on every process (a small picklable object, e.g. a measured setting)."""
    if world.size == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def torchrun_command(nproc: int, params_file: Path, root: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The command that runs the training stage in `nproc` data-parallel processes on this machine."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "ganlib.training", "--params", str(params_file), "--root", str(root),
    ]
    for expression in overrides:
        command += ["--set", expression]
    return command
