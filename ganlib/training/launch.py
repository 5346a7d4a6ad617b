"""How the training processes are started: one process, torchrun's ranks, or a scheduler's.

With `train.nproc > 1` on one machine the training stage runs

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.stages.train \\
        --params params.yaml --root .

and on `train.nnodes` machines each of them runs (nproc processes per node)

    python -m torch.distributed.run --nnodes=M --nproc_per_node=N --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:PORT --rdzv_id=ID -m ganlib.stages.train --params params.yaml --root .

(see `torchrun_command`; `python -m ganlib.stages.train` and the train task
build and start it themselves). A process that a scheduler or torchrun
already started as a rank (RANK and WORLD_SIZE set) never launches another:
it trains as that rank (`launched_as_rank`).

Nothing here shapes what training computes, so it is not part of a run's
identity (ganlib/io/source.py): the training loop never imports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from ganlib.config import TrainParams
from ganlib.errors import UserFacingError
from ganlib.training.distributed import SINGLE_PROCESS, World

# The module torchrun starts in each rank: training with the measurements attached to its ticks.
TRAINING_ENTRY_MODULE = "ganlib.stages.train"


class LaunchEnvironmentError(UserFacingError, RuntimeError):
    """The environment names this process a rank, but not completely (a variable of the launch is missing)."""


def launched_as_rank(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether torchrun, or a scheduler that starts the ranks itself, started this process as one rank.

    RANK or WORLD_SIZE decides it, not MASTER_ADDR alone: job scripts (SLURM's in
    particular) export MASTER_ADDR for the rendezvous endpoint before anything is
    launched, and such a process must still start torchrun.
    """
    return "WORLD_SIZE" in environ or "RANK" in environ


def world_from_env(environ: Mapping[str, str] = os.environ) -> World:
    """The process's place in a launch (RANK, WORLD_SIZE, LOCAL_RANK), or a single process.

    LOCAL_RANK defaults to 0: a scheduler that starts one rank per pod or node without
    torchrun (a one-process-per-pod PyTorchJob) does not set it. MASTER_ADDR/MASTER_PORT
    are required with more than one rank, since the process group is initialised from them.
    """
    if not launched_as_rank(environ):
        return SINGLE_PROCESS
    missing = [name for name in ("WORLD_SIZE", "RANK") if name not in environ]
    if not missing and int(environ["WORLD_SIZE"]) > 1:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in environ]
    if missing:
        present = ", ".join(f"{name}={environ[name]}" for name in _RANK_VARIABLES if name in environ)
        raise LaunchEnvironmentError(
            f"this process was started as a rank ({present}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: launch "
            "through torchrun (python -m ganlib.stages.train starts it), or have the scheduler set WORLD_SIZE, "
            "RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT together"
        )
    return World(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)))


_RANK_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


DEFAULT_RDZV_ID = "scenegan"


def needs_launcher(cfg: TrainParams) -> bool:
    """Whether training runs as torchrun ranks (several processes, machines, or a named rendezvous)."""
    return cfg.nproc > 1 or cfg.nnodes > 1 or cfg.rdzv_endpoint is not None


def torchrun_command(
    nproc: int,
    params_file: Path,
    root: Path,
    overrides: Sequence[str] = (),
    *,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = DEFAULT_RDZV_ID,
    node_rank: int | None = None,
) -> list[str]:
    """The command that starts this machine's `nproc` data-parallel processes of the training stage.

    One machine without an endpoint: `--standalone` (torchrun picks a free local port).
    Otherwise the nodes meet at `rdzv_endpoint`: with the c10d rendezvous, which numbers the
    nodes as they join, or, given a `node_rank`, with the static one, since that is the only
    rendezvous where torchrun honours --node_rank (c10d ignores it, with a warning).
    """
    command = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and rdzv_endpoint is None:
        command += ["--standalone", f"--nproc_per_node={nproc}"]
    else:
        if rdzv_endpoint is None:
            raise ValueError("several nodes need a rendezvous endpoint (host:port)")
        command += [
            f"--nnodes={nnodes}", f"--nproc_per_node={nproc}",
            f"--rdzv_backend={'c10d' if node_rank is None else 'static'}",
            f"--rdzv_endpoint={rdzv_endpoint}", f"--rdzv_id={rdzv_id}",
        ]
        if node_rank is not None:
            command.append(f"--node_rank={node_rank}")
    command += ["-m", TRAINING_ENTRY_MODULE, "--params", str(params_file), "--root", str(root)]
    for expression in overrides:
        command += ["--set", expression]
    return command


def launch_command(cfg: TrainParams, params_file: Path, root: Path, overrides: Sequence[str] = ()) -> list[str]:
    """torchrun_command for the node layout of `cfg` (train.nproc, nnodes, rdzv_endpoint, rdzv_id, node_rank)."""
    return torchrun_command(
        cfg.nproc, params_file, root, overrides, nnodes=cfg.nnodes, rdzv_endpoint=cfg.rdzv_endpoint,
        rdzv_id=cfg.rdzv_id, node_rank=cfg.node_rank,
    )
