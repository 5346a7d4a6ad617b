"""The `publish` stage as a Prefect flow: generator.pt + metrics.json -> the sample gallery and the model package.

With publish.gate: better_fid it may also re-score the published release's
generator against the prepared data (ganlib/publish/gate.py).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage_params import load_stage_params, named_task, stage_run_name
from tasks.publish import publish_gallery_task


@flow(name="publish", flow_run_name=stage_run_name("publish"))
def publish_flow(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Publish the gallery to publish.target (gated by publish.gate); write the model package to base.paths.model."""
    params, root = load_stage_params(params_file, overrides or [])
    return named_task(publish_gallery_task, "publish", params, root)(params, root)
