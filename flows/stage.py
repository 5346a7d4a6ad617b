"""Run one pipeline stage as a Prefect flow: `python -m flows.stage preprocess`.

This is what every `dvc.yaml` stage command calls, so a `dvc repro` and a
Prefect run execute the same code, and each stage is a named flow run in the
Prefect UI whenever PREFECT_API_URL points at a server (without one, Prefect
starts a temporary local server for the duration of the process).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from flows.offline import keep_prefect_offline
from ganlib.config import load_params, preset_overrides
from ganlib.errors import UserFacingError

STAGE_FLOWS = {
    "preprocess": "flows.preprocess:preprocess_flow",
    "train": "flows.train:train_flow",
    "evaluate": "flows.evaluate:evaluate_flow",
    "publish": "flows.publish:publish_flow",
}


def stage_flow(stage: str) -> Callable:
    module_name, _, attribute = STAGE_FLOWS[stage].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=sorted(STAGE_FLOWS))
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    add_override_argument(parser)


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one parameter for this run (validated like params.yaml); repeatable",
    )
    parser.add_argument(
        "--preset", metavar="NAME",
        help="apply a named preset from params.yaml `presets` first (then any --set); `scenegan preset` lists them",
    )


def expand_preset(args: argparse.Namespace) -> None:
    """Put the chosen preset's overrides in front of the --set ones (a --set wins over the preset)."""
    if getattr(args, "preset", None):
        args.overrides = preset_overrides(load_params(args.params), args.preset) + list(args.overrides)


def run_stage(stage: str, params_file: str, overrides: Sequence[str]) -> int:
    try:
        # Bad params fail here, in a line, before a flow run (and a server) starts.
        load_params(params_file, overrides)
        stage_flow(stage)(params_file=params_file, overrides=list(overrides))
    except UserFacingError as exc:
        print(f"scenegan {stage}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    keep_prefect_offline()
    parser = argparse.ArgumentParser(prog="python -m flows.stage", description=__doc__.splitlines()[0])
    add_stage_arguments(parser)
    args = parser.parse_args(argv)
    try:
        expand_preset(args)
    except UserFacingError as exc:
        print(f"scenegan {args.stage}: {exc}", file=sys.stderr)
        return 2
    return run_stage(args.stage, args.params, args.overrides)


if __name__ == "__main__":
    sys.exit(main())
