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

Bad params and a device setting this machine lacks are refused before the
stage writes anything; every error leaves through flows/boundary.py (one
line, exit status 2; a bug: its traceback and exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Iterable, Sequence

from flows.offline import keep_prefect_offline
from flows.boundary import run_guarded
from flows.reconcile import record_and_reconcile
from flows.server import prefect_api_for_process
from ganlib.config import Params, load_params, preset_overrides
from ganlib.hardware.device import require_device

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
        help="apply a named preset from presets.yaml (beside the params file) first, then any --set; "
             "`scenegan preset` lists them",
    )


def expand_preset(args: argparse.Namespace) -> None:
    """Put the chosen preset's overrides in front of the --set ones (a --set wins over the preset)."""
    if getattr(args, "preset", None):
        args.overrides = preset_overrides(load_params(args.params), args.preset) + list(args.overrides)


def stage_device_settings(params: Params, stage: str) -> list[tuple[str, str]]:
    """The device settings `stage` computes on, as (key, value): what must exist before it starts."""
    if stage == "train":
        return [("base.device", params.base.device)]
    if stage == "evaluate" or (stage == "publish" and params.publish.gate == "better_fid"):  # the gate re-scores
        return [("evaluate.device", params.evaluate.device)]
    return []


def check_stage_devices(params: Params, stages: Iterable[str]) -> None:
    """Refuse, before any of `stages` runs, a device setting that names an accelerator this machine lacks."""
    for stage in stages:
        for key, name in stage_device_settings(params, stage):
            require_device(name, key)


def run_stage(stage: str, params_file: str, overrides: Sequence[str]) -> None:
    # Bad params and a missing GPU fail here, in a line, before a flow run (and a server) starts
    # and before the stage writes anything.
    check_stage_devices(load_params(params_file, overrides), [stage])
    with prefect_api_for_process() as own_server:
        flow = stage_flow(stage)  # imported (Prefect, torch) while the server starts
        if own_server is not None:
            own_server.wait_until_ready()
        flow(params_file=params_file, overrides=list(overrides))


def main(argv: Sequence[str] | None = None) -> int:
    keep_prefect_offline()
    parser = argparse.ArgumentParser(prog="python -m flows.stage", description=__doc__.splitlines()[0])
    add_stage_arguments(parser)
    args = parser.parse_args(argv)

    def work() -> None:
        expand_preset(args)
        run_stage(args.stage, args.params, args.overrides)

    return run_guarded(work, as_json=False, label=f"scenegan {args.stage}", note=_dvc_outputs_note(args.stage))


def _dvc_outputs_note(stage: str) -> str:
    """Under `dvc repro` (which sets DVC_STAGE for a stage's command), say where the previous outputs went.

    DVC deletes a stage's outputs before it runs the command and does not put
    them back when the command fails (checked with DVC 3.67: tests/test_errors.py),
    so even a stage that refuses at once finds them gone. Cached outputs come
    back with `dvc checkout STAGE`; uncached ones (metrics.json) with git.
    """
    if not os.environ.get("DVC_STAGE"):
        return ""
    return (f"(dvc repro removed this stage's previous outputs before running it; `dvc checkout {stage}` "
            "restores them from the DVC cache; uncached ones, such as metrics.json, come back from git if committed)")


if __name__ == "__main__":
    sys.exit(main())
