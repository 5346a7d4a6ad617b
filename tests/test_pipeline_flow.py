"""The pipeline flow and dvc repro against a real `prefect server start`:
same outputs, flow runs and artifacts visible through the Prefect API, clear failure states."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from conftest import run, stop_process

# Outputs that must not depend on how the pipeline was run.
DETERMINISTIC_OUTPUTS = ["data/prepared/images.npy", "runs/train/generator.pt", "results/evaluate/metrics.json"]
STAGE_FLOWS = {"preprocess", "train", "evaluate", "publish"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """`prefect server start` as a user runs it (`make ui`), on a free port, with its own database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_UI_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"prefect server did not start:\n{server.stdout.read() if server.stdout else ''}")
                time.sleep(0.5)
        yield api
    finally:
        stop_process(server)


def query(api: str, coroutine_factory):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        return asyncio.run(coroutine_factory())


def completed_flow_runs(api: str) -> dict[str, list[str]]:
    """flow name -> names of its completed runs."""
    from prefect.client.orchestration import get_client

    async def runs():
        async with get_client() as client:
            flows = {f.id: f.name for f in await client.read_flows(limit=100)}
            found: dict[str, list[str]] = {}
            for flow_run in await client.read_flow_runs(limit=200):
                if flow_run.state and flow_run.state.is_completed():
                    found.setdefault(flows[flow_run.flow_id], []).append(flow_run.name)
            return found

    return query(api, runs)


def artifact_keys(api: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter

    async def keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts(artifact_filter=ArtifactFilter(), limit=200) if a.key}

    return query(api, keys)


@pytest.mark.slow
def test_pipeline_flow_and_dvc_repro_on_a_real_server(tiny_project, prefect_server):
    env = {**os.environ, "PREFECT_API_URL": prefect_server,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    scenegan = str(Path(sys.executable).with_name("scenegan"))
    dvc = str(Path(sys.executable).with_name("dvc"))

    run([scenegan, "pipeline"], tiny_project, env)
    via_flow = {name: digest(tiny_project / name) for name in DETERMINISTIC_OUTPUTS}
    # The flow recorded its outputs in dvc.lock: DVC has nothing to do.
    assert "Running stage" not in run([dvc, "repro"], tiny_project, env).stdout

    # Reproducing from scratch through DVC writes the very same bytes.
    shutil.rmtree(tiny_project / "runs")
    assert "Running stage 'train'" in run([dvc, "repro", "--force"], tiny_project, env).stdout
    assert {name: digest(tiny_project / name) for name in DETERMINISTIC_OUTPUTS} == via_flow

    # Both ways of running are visible in the server's API, with stage, dataset and kimg in the names.
    runs = completed_flow_runs(prefect_server)
    assert STAGE_FLOWS | {"pipeline"} <= set(runs)
    assert any(name.startswith("train · data ") and name.endswith(" kimg") for name in runs["train"])
    assert {"preprocess-summary", "train-progress", "train-samples", "evaluation-metrics", "gallery"} <= artifact_keys(prefect_server)

    # The summary `make demo` ends with links the run in the UI.
    summary = run([scenegan, "summary"], tiny_project, env).stdout
    assert "Gallery:" in summary and "FID" in summary
    assert f"{prefect_server.removesuffix('/api')}/runs/flow-run/" in summary


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
