"""Run one pipeline stage as a Prefect flow: `python -m flows.stage preprocess`.

This is what every `dvc.yaml` stage command calls, so a `dvc repro` and a
Prefect run execute the same code, and each stage is a named flow run in the
Prefect UI. Without PREFECT_API_URL the run starts a Prefect server of its
own (flows/server.py) that stops when the process ends, even by SIGKILL.

Every stage flow runs here with the project's run options: its process is
recorded on the run, and runs of this host whose process was killed are
marked Crashed as it starts (flows/reconcile.py); and nothing is persisted
as pickle (results are not persisted; the exception of a failed run, which
Prefect always writes, is written as JSON).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from flows.offline import keep_prefect_offline
from flows.reconcile import record_and_reconcile
from flows.server import prefect_api_for_process
from ganlib.config import load_params, preset_overrides
from ganlib.errors import UserFacingError

STAGE_FLOWS = {
    "preprocess": "flows.preprocess:preprocess_flow",
    "train": "flows.train:train_flow",
    "evaluate": "flows.evaluate:evaluate_flow",
    "publish": "flows.publish:publish_flow",
}


def stage_flow(stage: str) -> Callable:
    """The stage's flow with the project's run options (see the module docstring)."""
    module_name, _, attribute = STAGE_FLOWS[stage].partition(":")
    flow = getattr(importlib.import_module(module_name), attribute)
    hooks = list(flow.on_running_hooks)
    return flow.with_options(
        persist_result=False,
        result_serializer="json",
        on_running=hooks if record_and_reconcile in hooks else [*hooks, record_and_reconcile],
    )


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
        with prefect_api_for_process() as own_server:
            flow = stage_flow(stage)  # imported (Prefect, torch) while the server starts
            if own_server is not None:
                own_server.wait_until_ready()
            flow(params_file=params_file, overrides=list(overrides))
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
