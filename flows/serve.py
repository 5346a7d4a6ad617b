"""`scenegan serve`: the retrain deployment on the cron schedule from params.yaml.

`flow.serve` registers the deployment with the Prefect server in
PREFECT_API_URL and runs its scheduled (and manually started) runs in this
process until interrupted. For workers in a work pool, see prefect.yaml.
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.retrain import ensure_retrain_concurrency_limit, retrain_flow
from flows.stage_params import load_stage_params


def serve_retrain(params_file: str = "params.yaml") -> None:
    params, _ = load_stage_params(params_file)
    settings = params.retrain
    ensure_retrain_concurrency_limit()
    retrain_flow.serve(
        name=settings.deployment_name,
        schedules=[Cron(settings.cron, timezone=settings.timezone)],
        parameters={"params_file": str(Path(params_file).resolve())},
        # A run that starts while another is going is cancelled, not queued:
        # the next scheduled run picks up whatever changed in the meantime.
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="Retrain, evaluate and publish when the dataset version (data.dvc) changes.",
        tags=["scenegan"],
    )
