"""The train stage: training, with the FID/KID curve measured at its ticks.

    python -m ganlib.stages.train --params params.yaml --root . [--set train.nnodes=2 ...]

Started as a rank (by torchrun, or by a scheduler that sets RANK and WORLD_SIZE) it
trains as that rank. Otherwise, when the params ask for several processes or machines,
it replaces itself with this machine's torchrun, e.g.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.stages.train --params params.yaml --root .

(`ganlib.training.launch.launch_command` builds that line), which starts the ranks;
so on a cluster each node runs the same command (`srun python -m ganlib.stages.train ...`).

The trainer knows nothing about metrics: `with_fid_curve` wraps its per-tick
callback. The curve is written into the run's working directory (which survives
an interruption; a resumed run carries on from its last point), and the trainer
publishes every CSV there with its outputs, so it ends up as
`<base.paths.train>/fid_curve.csv`, where `dvc plots show` finds it.
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
    from ganlib.training.loop import TickReport

TickCallback = Callable[["TickReport"], None]


def with_fid_curve(params: Params, log: Logger, root: Path, on_tick: TickCallback | None = None) -> TickCallback | None:
    """`on_tick`, preceded by a FID/KID measurement whenever one is due (or `on_tick` itself when off)."""
    if params.evaluate.during_training.every_kimg <= 0:
        return on_tick
    # Imported only when the curve is on: the extractor and torch-fidelity take seconds to import.
    from ganlib.metrics.during_training import TrainingEvaluator, curve_path

    evaluator: TrainingEvaluator | None = None

    def tick(report: TickReport) -> None:
        nonlocal evaluator
        if evaluator is None:  # built lazily: the run directory is only known once training runs
            device = next(report.generator.parameters()).device
            evaluator = TrainingEvaluator(params, log, root, curve_path(report.run_dir), device)
        evaluator.maybe_measure(report.generator, params.train.z_dim, report.kimg)
        if on_tick is not None:
            on_tick(report)

    return tick


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
        # Imported only here: the trainer (seconds of imports) is not needed by a launcher
        # that is about to exec torchrun, and every rank imports it anyway.
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
