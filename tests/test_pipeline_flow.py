"""The pipeline flow: same outputs as `dvc repro`, artifacts in Prefect, clear failure states."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import run

# Outputs that must not depend on how the pipeline was run.
DETERMINISTIC_OUTPUTS = ["data/prepared/images.npy", "runs/train/generator.pt", "results/evaluate/metrics.json"]
# Says how the numbers were obtained, not what they are.
OBSERVATIONAL_METRICS_KEYS = {"reference_stats_cached"}


def digest(path: Path) -> str:
    if path.suffix == ".json":
        data = {k: v for k, v in json.loads(path.read_text()).items() if k not in OBSERVATIONAL_METRICS_KEYS}
        return json.dumps(data, sort_keys=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter

    async def keys() -> set[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(), limit=200)
            return {a.key for a in artifacts if a.key}

    return asyncio.run(keys())


@pytest.mark.slow
def test_pipeline_flow_equals_dvc_repro(tiny_project, subprocess_env):
    from flows.pipeline import PipelineOptions, pipeline_flow

    result = pipeline_flow(PipelineOptions(params_file=str(tiny_project / "params.yaml")))
    assert result["publish"]["status"] == "published"
    via_flow = {name: digest(tiny_project / name) for name in DETERMINISTIC_OUTPUTS}

    # The flow recorded its outputs in dvc.lock: DVC has nothing to do.
    dvc = str(Path(sys.executable).with_name("dvc"))
    assert "Running stage" not in run([dvc, "repro"], tiny_project, subprocess_env).stdout

    # Reproducing from scratch through DVC writes the very same bytes.
    shutil.rmtree(tiny_project / "runs")
    reproduced = run([dvc, "repro", "--force"], tiny_project, subprocess_env).stdout
    assert "Running stage 'train'" in reproduced
    assert {name: digest(tiny_project / name) for name in DETERMINISTIC_OUTPUTS} == via_flow

    assert {"preprocess-summary", "train-progress", "train-samples", "evaluation-metrics", "gallery"} <= artifact_keys()


def test_pipeline_fails_clearly_without_upstream_outputs(tiny_project, prefect_api_url):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.pipeline import PipelineOptions, pipeline_flow
    from ganlib.errors import UserFacingError

    with pytest.raises(UserFacingError, match="generator"):
        pipeline_flow(PipelineOptions(params_file=str(tiny_project / "params.yaml"), stages=["evaluate"]))

    async def latest_state() -> str:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
            return runs[0].state.type.value

    assert asyncio.run(latest_state()) == "FAILED"
    # Nothing was written by the failed stage.
    assert not (tiny_project / "results").exists()
