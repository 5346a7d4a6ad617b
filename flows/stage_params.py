"""Loading a stage's parameters inside a flow, and naming its runs.

Paths in params.yaml are relative to the file's own directory (the
repository root), so a flow behaves the same whatever the worker's cwd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from prefect import Task
from prefect.runtime import flow_run

from ganlib.config import Params, load_params
from ganlib.io.provenance import DATA_DVC_FILE, dvc_tracked_md5, short_md5


def load_stage_params(params_file: str, overrides: Sequence[str] = ()) -> tuple[Params, Path]:
    """The validated params and the repository root they are relative to."""
    path = Path(params_file).resolve()
    return load_params(path, overrides), path.parent


def dataset_tag(root: Path) -> str:
    """`data 1a2b3c4d`: the dataset version as it reads in a run name."""
    return f"data {short_md5(dvc_tracked_md5(root / DATA_DVC_FILE))}"


def run_label(stage: str, params: Params, root: Path) -> str:
    """`train · data 1a2b3c4d · 48 kimg`: stage, dataset version and (after preprocessing) training length."""
    label = f"{stage} · {dataset_tag(root)}"
    return label if stage == "preprocess" else f"{label} · {params.train.kimg:g} kimg"


def named_task(stage_task: Task, stage: str, params: Params, root: Path) -> Task:
    """The stage's task with a run name saying the stage, the dataset version and the kimg."""
    return stage_task.with_options(task_run_name=run_label(stage, params, root))


def stage_run_name(stage: str) -> Callable[[], str]:
    """A flow_run_name callable giving run_label() for the flow's own parameters."""

    def name() -> str:
        parameters = flow_run.parameters
        params_file = Path(parameters.get("params_file", "params.yaml")).resolve()
        # Naming must never fail a run: bad params are reported by the flow itself.
        try:
            return run_label(stage, load_params(params_file, parameters.get("overrides") or []), params_file.parent)
        except Exception:
            return f"{stage} · {dataset_tag(params_file.parent)}"

    return name
