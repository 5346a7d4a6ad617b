"""Scheduled retraining: retrain, evaluate and publish when the dataset version changes.

`scenegan serve` serves this flow as a deployment on retrain.cron; the steps
and their guarantees are described in ganlib/versions/retrain.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.reconcile import record_and_reconcile
from flows.stage import STAGE_FLOWS, check_stage_devices
from flows.stage_params import dataset_tag, load_stage_params
from ganlib.config import Params
from ganlib.versions import retrain

# One retrain at a time per Prefect server, whoever starts it (schedule,
# UI, CLI): a global concurrency limit of one slot.
RETRAIN_CONCURRENCY_LIMIT = "scenegan-retrain"


def put_interpreter_first_on_path() -> None:
    """Make `python` on PATH this interpreter's, for dvc.yaml's `python -m flows.stage` commands.

    A worker started as `.venv/bin/prefect worker start` (venv not activated)
    runs the flow with the venv's interpreter, but the stages that `dvc exp
    run` starts would otherwise find whatever `python` comes first on PATH.
    """
    bin_dir = Path(sys.executable).parent
    found = shutil.which("python")
    if found is None or Path(found).parent != bin_dir:
        os.environ["PATH"] = os.pathsep.join(filter(None, [str(bin_dir), os.environ.get("PATH")]))


def ensure_retrain_concurrency_limit() -> None:
    """Create (or reset to one slot) the global concurrency limit the flow holds."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(RETRAIN_CONCURRENCY_LIMIT, 1)


@task(name="refresh-dataset-version", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30)
def refresh_dataset_version_task(root: Path) -> str | None:
    return retrain.refresh_dataset_version(root, get_run_logger())


@task(name="run-experiment", cache_policy=NO_CACHE, persist_result=False)
def run_experiment_task(params: Params, root: Path, name: str) -> None:
    retrain.run_experiment(params, root, name, get_run_logger())


@task(name="apply-and-publish", cache_policy=NO_CACHE, persist_result=False)
def apply_and_publish_task(params: Params, root: Path, name: str) -> bool:
    return retrain.apply_and_publish(params, root, name, get_run_logger())


def retrain_run_name() -> str:
    params_file = flow_run.parameters.get("params_file", "params.yaml")
    return f"retrain · {dataset_tag(Path(params_file).resolve().parent)}"


# As the pipeline flow: no results persisted, a failure's exception as JSON, killed runs crashed on start.
@flow(name="retrain", flow_run_name=retrain_run_name, persist_result=False, result_serializer="json",
      on_running=[record_and_reconcile])
def retrain_flow(params_file: str = "params.yaml", force: bool = False) -> dict[str, Any]:
    """Retrain if the dataset version changed since the last successful retrain (or if forced)."""
    log = get_run_logger()
    params, root = load_stage_params(params_file)
    put_interpreter_first_on_path()
    ensure_retrain_concurrency_limit()
    with concurrency(RETRAIN_CONCURRENCY_LIMIT, occupy=1, strict=True):
        data_md5 = refresh_dataset_version_task(root)
        changed, previous = retrain.needs_retrain(params, root, data_md5)
        if not changed and not force:
            log.info("nothing to do: dataset version %s was already retrained", data_md5)
            return retrain.RetrainOutcome(retrain.NOTHING_TO_DO, data_md5, previous).as_dict()

        # A missing GPU fails here, before `dvc exp run` removes any stage's outputs.
        check_stage_devices(params, STAGE_FLOWS)
        now = retrain.utc_now()
        name = retrain.experiment_name(params, data_md5, now)
        log.info("dataset version %s (%s): running experiment %s", data_md5, previous_text(previous), name)
        run_experiment_task(params, root, name)
        publish_ran = apply_and_publish_task(params, root, name)
        outcome = retrain.record_retrain(params, root, name, previous, str(flow_run.id), now, publish_ran)
        if params.retrain.commit:
            outcome = replace(outcome, committed=retrain.commit_results(params, root, outcome.data_md5, name),
                              to_commit=retrain.uncommitted_version_files(params, root))
        log.info("retrain %s: %s", outcome.outcome, outcome.reason)
        create_markdown_artifact(key="retrain", markdown=retrain_markdown(outcome), description="last retrain")
        return outcome.as_dict()


def previous_text(previous: str | None) -> str:
    return f"previous version {previous}" if previous else "the first retrain of this project"


def retrain_markdown(outcome: retrain.RetrainOutcome) -> str:
    """The run's `retrain` artifact: the outcome and why, in the summary's words."""
    return "\n".join([
        f"### Retrained on dataset `{outcome.data_md5}`: {outcome.outcome}",
        "",
        f"- experiment `{outcome.experiment}` (`dvc exp show`)",
        f"- {previous_text(outcome.previous_md5)}",
        f"- FID {outcome.fid}",
        f"- gallery: {outcome.outcome}, release `{outcome.release}`: {outcome.reason}",
    ])
