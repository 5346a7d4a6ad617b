"""Data-parallel training across processes (torchrun): the collectives and the launch command.

With `train.nproc > 1` the training stage runs

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.training \\
        --params params.yaml --root .

(see `torchrun_command`). Every process builds the same networks from the
same seed, takes its own share of each global batch, and after each backward
pass the gradients (and the loss, so that the NaN guard agrees everywhere)
are summed across processes in one flat all-reduce before the optimiser
step. Rank 0 writes checkpoints and outputs. Backend: NCCL on CUDA (one GPU
per process, LOCAL_RANK), gloo on CPU.

Why an explicit all-reduce instead of wrapping the networks in
torch.nn.parallel.DistributedDataParallel: a GAN step runs D forward
several times per backward (real, fake, penalty interpolates), takes
double-backward gradient penalties, and back-propagates G's loss through
a frozen D; DDP's reducer supports none of these without workarounds
(static graphs, concatenated batches that change BatchNorm statistics).
One flat all-reduce per optimiser step is what StyleGAN2-ADA and EDM
settle on, and it is exactly the arithmetic DDP performs.

BatchNorm statistics are per microbatch (`train.microbatch`) in every
process, so a run's result depends on the microbatch size but not on how
many processes share the work: one process doing two microbatches of 32 and
two processes doing one each compute the same step (tests/test_distributed.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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


def init_process_group(world: World, device: torch.device) -> None:
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


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
