"""The train stage: training, with the FID/KID curve measured at its ticks.

    python -m ganlib.stages.train --params params.yaml --root . [--set train.nnodes=2 ...]

Started as a rank (by torchrun, or by a scheduler that sets RANK and WORLD_SIZE) it
trains as that rank. Otherwise, when the params ask for several processes or machines,
it replaces itself with this machine's torchrun, e.g.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.stages.train --params params.yaml --root .

(`ganlib.training.launch.launch_command` builds that line), which starts the ranks;
so on a cluster each node runs the same command (`srun python -m ganlib.stages.train ...`).

The trainer knows nothing about metrics: `train_with_curves` attaches the FID
curve and the dvclive log to its per-tick callback (ganlib/stages/train_curves.py).
The FID curve is written into the run's working directory (which survives an
interruption; a resumed run carries on from its last point), and the trainer
publishes every CSV there with its outputs (`<base.paths.train>/fid_curve.csv`);
the dvclive log (`base.paths.live`: losses, img/s, diversity, FID/KID and the
sample grids per tick) is what `dvc plots show` draws.
Imports of the trainer are deferred: a launcher about to exec torchrun needs none of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ganlib.config import Params, load_params
from ganlib.errors import UserFacingError
from ganlib.logs import Logger, plain_logger
from ganlib.training.launch import launch_command, launched_as_rank, needs_launcher, world_from_env

if TYPE_CHECKING:
    from ganlib.training.distributed import World
    from ganlib.training.loop import TickReport, TrainSummary

TickCallback = Callable[["TickReport"], None]


def train_with_curves(
    params: Params, log: Logger, root: Path, *, world: World, on_tick: TickCallback | None = None,
) -> TrainSummary:
    """train_gan with, on rank 0, the FID curve and the dvclive log attached to its ticks, then `on_tick`."""
    from ganlib.training.loop import train_gan

    if not world.is_main:
        return train_gan(params, log, root, world=world)
    from ganlib.stages.train_curves import TrainingCurves

    curves = TrainingCurves(params, log, root)
    summary = train_gan(params, log, root, on_tick=curves.hook(on_tick), world=world)
    curves.finish(summary.run_dir)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Rank-local training (under torchrun), or plain single-process training without it."""
    parser = argparse.ArgumentParser(prog="python -m ganlib.stages.train", description=main.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="project root the params paths are relative to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)

    import torch.distributed as dist

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
        train_with_curves(params, log, args.root, world=world)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
