"""The `train` stage as a Prefect flow: the prepared dataset -> the EMA generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.stage_params import load_stage_params, named_task, stage_run_name
from tasks.train import train_gan_task


@flow(name="train", flow_run_name=stage_run_name("train"))
def train_flow(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Train the GAN (resuming a matching checkpoint automatically) and write generator.pt."""
    params, root = load_stage_params(params_file, overrides or [])
    return named_task(train_gan_task, "train", params, root)(
        params, root, str(Path(params_file).resolve()), overrides or []
    )
