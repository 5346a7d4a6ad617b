"""The whole pipeline as one Prefect flow: preprocess -> train -> evaluate -> publish.

It calls the same tasks as the per-stage flows that `dvc repro` runs, in one
process, so for the same params it writes the same outputs. When it ran with
the params file as it is (no overrides), it finishes with `dvc commit`, so
that DVC records the outputs and a later `dvc repro` has nothing to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.reconcile import record_and_reconcile
from flows.stage_params import dataset_tag, load_stage_params, named_task
from ganlib.config import Params
from ganlib.data.raw_data import ensure_raw_data
from ganlib.io.dvc_cli import run_dvc
from tasks.evaluate import evaluate_generator_task
from tasks.preprocess import prepare_dataset_task
from tasks.publish import publish_gallery_task
from tasks.train import train_gan_task

Stage = Literal["preprocess", "train", "evaluate", "publish"]
ALL_STAGES: list[Stage] = ["preprocess", "train", "evaluate", "publish"]


class PipelineOptions(BaseModel):
    """What to run; shown as a form when a run is started from the Prefect UI."""

    params_file: str = Field("params.yaml", description="params.yaml of the project (paths are relative to it)")
    stages: list[Stage] = Field(default_factory=lambda: list(ALL_STAGES), description="stages to run, in pipeline order")
    overrides: list[str] = Field(
        default_factory=list, description="section.key=value overrides for this run only (then DVC is not updated)"
    )
    record_in_dvc: bool = Field(True, description="`dvc commit` the outputs afterwards (only without overrides)")


def pipeline_run_name() -> str:
    options = flow_run.parameters.get("options") or {}
    params_file = options.get("params_file", "params.yaml") if isinstance(options, dict) else options.params_file
    return f"pipeline · {dataset_tag(Path(params_file).resolve().parent)}"


# Pulling from a DVC remote is network I/O: worth a retry.
@task(name="ensure-raw-data", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=15)
def ensure_raw_data_task(params: Params, root: Path) -> str:
    return ensure_raw_data(params, root, get_run_logger()).origin


@task(name="dvc-commit", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def record_outputs_in_dvc_task(root: Path, stages: list[Stage]) -> None:
    run_dvc(["commit", "--force", *stages], root)
    get_run_logger().info("recorded the outputs of %s in dvc.lock", ", ".join(stages))


# Results are not persisted (nothing reads them back); Prefect always writes a failed run's exception, as JSON
# here, not pickle. The hook records this run's process and crashes this host's killed runs (flows/reconcile.py).
@flow(name="pipeline", flow_run_name=pipeline_run_name, persist_result=False, result_serializer="json",
      on_running=[record_and_reconcile])
def pipeline_flow(options: PipelineOptions = PipelineOptions()) -> dict[str, Any]:
    """Run the selected stages in order; a failing stage fails the run and stops the rest."""
    params, root = load_stage_params(options.params_file, options.overrides)
    params_file = str(Path(options.params_file).resolve())
    stages = [stage for stage in ALL_STAGES if stage in options.stages]
    results: dict[str, Any] = {}

    if "preprocess" in stages:
        ensure_raw_data_task(params, root)
        results["preprocess"] = named_task(prepare_dataset_task, "preprocess", params, root)(params, root)
    if "train" in stages:
        results["train"] = named_task(train_gan_task, "train", params, root)(params, root, params_file, options.overrides)
    if "evaluate" in stages:
        results["evaluate"] = named_task(evaluate_generator_task, "evaluate", params, root)(params, root)
    if "publish" in stages:
        results["publish"] = named_task(publish_gallery_task, "publish", params, root)(params, root)

    if options.record_in_dvc and not options.overrides:
        record_outputs_in_dvc_task(root, stages)
    return results
