"""Training's command-line entry point: rank-local training under torchrun, or one process without it.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib.training --params params.yaml --root .

(`ganlib.training.distributed.torchrun_command` builds that line.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch.distributed as dist

from ganlib.config import load_params
from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger
from ganlib.training.distributed import world_from_env
from ganlib.training.fid_curve import with_fid_curve
from ganlib.training.loop import train_gan


def main(argv: Sequence[str] | None = None) -> int:
    """Rank-local training (under torchrun), or plain single-process training without it."""
    parser = argparse.ArgumentParser(prog="python -m ganlib.training", description=main.__doc__)
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
