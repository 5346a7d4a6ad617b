"""Training's command-line entry point: rank-local training under torchrun, or one process without it.

    python -m ganlib.training --params params.yaml --root . [--set train.nnodes=2 ...]

Started as a rank (by torchrun, or by a scheduler that sets RANK and WORLD_SIZE) it
trains as that rank. Otherwise, when the params ask for several processes or machines,
it replaces itself with this machine's torchrun, e.g.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.training --params params.yaml --root .

(`ganlib.training.distributed.launch_command` builds that line), which starts the ranks;
so on a cluster each node runs the same command (`srun python -m ganlib.training ...`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import torch.distributed as dist

from ganlib.config import load_params
from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger
from ganlib.training.distributed import launch_command, launched_as_rank, needs_launcher, world_from_env


def main(argv: Sequence[str] | None = None) -> int:
    """Rank-local training (under torchrun), or plain single-process training without it."""
    parser = argparse.ArgumentParser(prog="python -m ganlib.training", description=main.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="project root the params paths are relative to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)

    try:
        world = world_from_env()
        log = plain_logger(f"scenegan.train.rank{world.rank}")
        if not world.is_main:
            log.setLevel("WARNING")
        params = load_params(args.params, args.overrides)
        if not launched_as_rank() and needs_launcher(params.train):
            command = launch_command(params.train, args.params, args.root, args.overrides)
            log.info("launching this node's %d training process(es): %s", params.train.nproc, " ".join(command))
            sys.stdout.flush()
            sys.stderr.flush()
            # exec, not a child: a scheduler's signals (srun, a pod's termination) reach torchrun,
            # which passes them to the ranks.
            os.execv(command[0], command)
        # Imported only here: the trainer and the FID code (seconds of imports) are not needed by
        # a launcher that is about to exec torchrun, and every rank imports them anyway.
        from ganlib.training.fid_curve import with_fid_curve
        from ganlib.training.loop import train_gan

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
