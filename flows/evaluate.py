"""The `evaluate` stage as a Prefect flow: generator.pt -> metrics.json (FID, KID, IS)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage_params import load_stage_params, named_task, stage_run_name
from tasks.evaluate import evaluate_generator_task


@flow(name="evaluate", flow_run_name=stage_run_name("evaluate"))
def evaluate_flow(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Score the trained EMA generator against the prepared dataset, offline."""
    params, root = load_stage_params(params_file, overrides or [])
    return named_task(evaluate_generator_task, "evaluate", params, root)(params, root)
