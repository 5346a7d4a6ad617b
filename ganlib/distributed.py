"""Data-parallel training across processes (torchrun), and its command-line entry point.

With `train.nproc > 1` the training stage runs

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.distributed \\
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

import argparse
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
        "-m", "ganlib.distributed", "--params", str(params_file), "--root", str(root),
    ]
    for expression in overrides:
        command += ["--set", expression]
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Rank-local training (under torchrun), or plain single-process training without it."""
    from ganlib.config import load_params
    from ganlib.errors import UserFacingError
    from ganlib.fid_curve import with_fid_curve
    from ganlib.logs import plain_logger
    from ganlib.training import train_gan

    parser = argparse.ArgumentParser(prog="python -m ganlib.distributed", description=main.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="project root the params paths are relative to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)

    world = world_from_env()
    log = plain_logger(f"scenegan.train.rank{world.rank}")
    if not world.is_main:
        log.setLevel("WARNING")
    try:
        params = load_params(args.params, args.overrides)
        on_tick = with_fid_curve(params, log, args.root) if world.is_main else None
        train_gan(params, log, args.root, on_tick=on_tick, world=world)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
