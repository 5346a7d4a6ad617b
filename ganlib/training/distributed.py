"""Data-parallel training across processes: the process group and its collectives.

How the processes are started (torchrun, a scheduler) is ganlib/training/launch.py;
this module is what the ranks do together once they run.

Across machines, every rank reads the checkpoints rank 0 writes (resuming),
and rank 0, wherever the rendezvous puts it, writes the outputs: both must be
on storage that every node sees at the same path. `check_shared_directories`
proves that before training starts, and refuses to train otherwise.

Every process builds the same networks from the
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

import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ganlib.errors import UserFacingError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = World(rank=0, size=1, local_rank=0)


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


def all_gather_object(value: Any, world: World) -> list[Any]:
    """Every process's `value` (a small picklable object), in rank order, on every process."""
    if world.size == 1:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


# ---------------------------------------------------------------------- shared storage

SHARED_CHECK_PREFIX = ".shared-storage-check-"
# How long a rank keeps looking for rank 0's token before it reports the directory as not shared.
# The token's name is new (never looked up before), and every rank creates the directory itself
# first, so an NFS client has no cached "no such file" to serve and sees it at once; the wait only
# covers slower shared filesystems (FUSE mounts of object stores with stat caches).
SHARED_CHECK_WAIT_S = 10.0


class SharedStorageError(UserFacingError, RuntimeError):
    """A directory that every rank must read is not the same directory on every node."""


def check_shared_directories(directories: Mapping[str, Path], world: World,
                             wait_s: float = SHARED_CHECK_WAIT_S) -> None:
    """Refuse to train unless every rank sees, in each directory, the token file rank 0 writes there.

    `directories` maps a name for the message (the params key) to the directory. Rank 0 writes
    a random token into each; after a barrier every rank reads them back; the verdicts are
    gathered, so either every rank goes on or every rank raises SharedStorageError (no rank is
    left waiting in a collective). Rank 0 removes the tokens once every rank has looked.
    """
    if world.size == 1:
        return
    # A rank that fails here still joins every collective below, so that none is left waiting.
    problems = []
    for key, directory in directories.items():
        try:
            directory.mkdir(parents=True, exist_ok=True)  # every rank: see SHARED_CHECK_WAIT_S
        except OSError as exc:
            problems.append(f"cannot create {key} ({directory}): {exc.strerror}")
    token = broadcast_object(secrets.token_hex(16) if world.is_main else None, world)
    tokens = {key: directory / f"{SHARED_CHECK_PREFIX}{token}" for key, directory in directories.items()}
    if world.is_main and not problems:
        try:
            for path in tokens.values():
                path.write_text(token)
        except OSError as exc:
            problems.append(f"cannot write {exc.filename}: {exc.strerror}")
    barrier(world)
    deadline = time.monotonic() + wait_s
    unseen = [] if problems else [key for key, path in tokens.items() if not _token_visible(path, token, deadline)]
    # all_gather is the second barrier: once it returns, every rank has looked, and rank 0 may clean up.
    reports = all_gather_object((world.rank, socket.gethostname(), unseen, problems), world)
    if world.is_main:
        for path in tokens.values():
            path.unlink(missing_ok=True)
    failed = [f"rank {rank} on {host}: {'; '.join(found)}" for rank, host, _, found in reports if found]
    if failed:
        raise SharedStorageError(
            "cannot check that the run's directories are shared by every node:\n  " + "\n  ".join(failed))
    blind = [(rank, host, unseen) for rank, host, unseen, _ in reports if unseen]
    if blind:
        main_host = reports[0][1]
        ranks = "; ".join(f"rank {rank} on {host} does not see it in {', '.join(unseen)}"
                          for rank, host, unseen in blind)
        listed = "\n  ".join(f"{key}: {directory}" for key, directory in directories.items())
        raise SharedStorageError(
            f"training across machines needs its checkpoint and output directories on shared storage "
            f"(NFS, a shared volume) visible to every node at the same path, and they are not:\n  {listed}\n"
            f"rank 0 on {main_host} wrote a token file into each; {ranks}. Every rank resumes from the "
            "checkpoints rank 0 writes, and rank 0 may run on any node: put these paths on storage every "
            "node mounts (or run from a checkout on it, --root). Training did not start."
        )


def _token_visible(path: Path, token: str, deadline: float) -> bool:
    pause = 0.05
    while True:
        try:
            if path.read_text() == token:
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)
