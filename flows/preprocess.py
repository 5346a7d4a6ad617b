"""The `preprocess` stage as a Prefect flow: data/raw -> data/prepared."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage_params import load_stage_params, named_task, stage_run_name
from tasks.preprocess import prepare_dataset_task


@flow(name="preprocess", flow_run_name=stage_run_name("preprocess"))
def preprocess_flow(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Decode, check, resize and pack the raw images into the prepared dataset."""
    params, root = load_stage_params(params_file, overrides or [])
    return named_task(prepare_dataset_task, "preprocess", params, root)(params, root)
