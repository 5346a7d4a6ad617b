"""`scenegan serve`: the retrain deployment exists with the cron schedule from params.yaml,
and a run started with run_deployment completes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, stop_process

from ganlib.config import load_params
from ganlib.io.provenance import dvc_tracked_md5
from ganlib.versions.history import append_history_row


async def _deployment(name: str):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            return await client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def wait_for_deployment(name: str, server: subprocess.Popen, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"`scenegan serve` exited early:\n{server.stdout.read()}")
        deployment = asyncio.run(_deployment(name))
        if deployment is not None:
            return deployment
        time.sleep(1)
    raise AssertionError(f"deployment {name} did not appear within {timeout_s} s")


@pytest.mark.slow
def test_serve_creates_scheduled_deployment_that_runs(tiny_project, subprocess_env):
    from prefect.deployments import run_deployment

    params = load_params(tiny_project / "params.yaml")
    # The current dataset version was already retrained: the served run has nothing to do.
    append_history_row(tiny_project / params.base.paths.history, {"data_md5": dvc_tracked_md5(tiny_project / "data.dvc")})

    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("scenegan")), "serve"],
        cwd=tiny_project, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        name = f"retrain/{params.retrain.deployment_name}"
        deployment = wait_for_deployment(name, server)
        [schedule] = deployment.schedules
        assert schedule.schedule.cron == params.retrain.cron
        assert schedule.schedule.timezone == params.retrain.timezone
        assert schedule.active
        assert deployment.parameters["params_file"] == str(tiny_project / "params.yaml")

        flow_run = run_deployment(name, timeout=240, poll_interval=2)
        assert flow_run.state.is_completed(), flow_run.state
    finally:
        stop_process(server)


def test_prefect_yaml_matches_params():
    """prefect.yaml (for `prefect deploy` to a work pool) must schedule what params.yaml says."""
    params = load_params(REPO_ROOT / "params.yaml")
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    [deployment] = config["deployments"]
    assert deployment["name"] == params.retrain.deployment_name
    assert deployment["entrypoint"] == "flows/retrain.py:retrain_flow"
    [schedule] = deployment["schedules"]
    assert schedule["cron"] == params.retrain.cron
    assert schedule["timezone"] == params.retrain.timezone
    assert deployment["concurrency_limit"]["limit"] == 1
