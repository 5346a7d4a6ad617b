"""The retrain deployment from prefect.yaml, run by a `process` worker in a work pool.

What the comments in prefect.yaml tell a team to do, against a real
`prefect server` on a loopback port with its own PREFECT_HOME:
`prefect work-pool create`, `prefect deploy --name scheduled-retrain` from a
project checkout (SCENEGAN_REPO), `prefect worker start --pool`. The worker
runs in another directory, so a run only finds params.yaml, data.dvc and the
flow's code through the deployment's pull step.

The checkout's dataset version is already in its retrain history, so a run
does the cheap part of the real flow (load params, take the global retrain
slot, refresh and compare the dataset version with DVC) and ends with
"nothing to do": no training. Overlap: while a run holds the deployment's one
slot, another run of the deployment is cancelled (CANCEL_NEW) before any
worker starts it; the run holding the slot does no work while something else
holds the flow's global concurrency limit, then completes; the slot comes back
and the next run completes too (from a deployment made without SCENEGAN_REPO,
so the worker's own value fills in the pull step).

Loopback only: the Prefect processes get a proxy on a closed loopback port
for everything but 127.0.0.1, so anything that reached for the internet
(the server looks up the collection registry when a work pool is created)
fails at once instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml
from conftest import REPO_ROOT

from flows.retrain import RETRAIN_CONCURRENCY_LIMIT, put_interpreter_first_on_path
from flows.server import free_loopback_port, prefect_executable, stop_process_group, wait_until_healthy
from ganlib.config import load_params
from ganlib.io.provenance import dvc_tracked_md5
from ganlib.versions.history import append_history_row

WORKER_NAME = "scenegan-test-worker"
STATE_TIMEOUT_S = 120.0
HOLD_S = 3.0  # a run that did not wait for the global limit would be done, or well on, by then
NOT_ON_LOOPBACK = "http://127.0.0.1:9"  # the discard port: nothing listens there


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """This machine's environment, minus any Prefect or scenegan settings of the user's, for one server."""
    proxies = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "SCENEGAN_REPO")) and k.upper() not in proxies}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        HTTP_PROXY=NOT_ON_LOOPBACK, HTTPS_PROXY=NOT_ON_LOOPBACK, ALL_PROXY=NOT_ON_LOOPBACK,
        NO_PROXY="127.0.0.1,localhost",
    )
    if "SCENEGAN_CACHE_DIR" in os.environ:  # the session's speed-probe cache (conftest)
        env["SCENEGAN_CACHE_DIR"] = os.environ["SCENEGAN_CACHE_DIR"]
    return env


@contextlib.contextmanager
def background(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A long-running process in its own process group, stopped (group and all) however the block ends."""
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        stop_process_group(process)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path.name}: none)"


def prefect_cli(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([prefect_executable(), *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=180)
    assert result.returncode == 0, f"prefect {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dvc_stages_find_the_flows_interpreter(monkeypatch, tmp_path):
    """A worker started as .venv/bin/prefect (venv not activated): `python` in dvc.yaml is still the venv's."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no python at all
    put_interpreter_first_on_path()
    assert Path(shutil.which("python")).parent == Path(sys.executable).parent
    before = os.environ["PATH"]
    put_interpreter_first_on_path()  # already first: left as it is
    assert os.environ["PATH"] == before


@pytest.mark.slow  # a real `prefect server`, a worker and its flow-run processes: 35-40 s on 2 cores
def test_retrain_deployment_runs_on_a_process_worker(tiny_project, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    [spec] = config["deployments"]
    pool = spec["work_pool"]["name"]
    checkout = tiny_project
    shutil.copy2(REPO_ROOT / "prefect.yaml", checkout / "prefect.yaml")
    params = load_params(checkout / "params.yaml")
    data_md5 = dvc_tracked_md5(checkout / "data.dvc")
    history = checkout / params.base.paths.history
    append_history_row(history, {"data_md5": data_md5, "experiment": "retrain-before-the-test"})
    history_before = history.read_bytes()

    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(tmp_path / "prefect-home", api_url)
    server_env = dict(
        env,
        PREFECT_UI_API_URL=api_url,
        PREFECT_SERVER_UI_ENABLED="false",
        # The daily cron schedule stays on the deployment, but nothing turns it into runs here.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        # A run waiting for the global limit retries after at most a second (default: up to 30 s).
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="1",
    )
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    worker_dir = tmp_path / "worker"  # not the checkout: only the pull step leads there
    worker_dir.mkdir()
    server_command = [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    worker_command = [prefect_executable(), "worker", "start", "--pool", pool, "--name", WORKER_NAME]
    # Poll every second (default 10). SCENEGAN_REPO on the worker: for a deployment made without it.
    worker_env = dict(env, PREFECT_WORKER_QUERY_SECONDS="1", SCENEGAN_REPO=str(checkout))
    deploy = ["--no-prompt", "deploy", "--name", spec["name"]]

    with background(server_command, tmp_path, server_env, server_log) as server:
        wait_until_healthy(api_url, server, server_log)
        prefect_cli(["work-pool", "create", pool, "--type", "process"], tmp_path, env)
        prefect_cli(deploy, checkout, dict(env, SCENEGAN_REPO=str(checkout)))

        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"retrain/{spec['name']}")
            assert deployment.work_pool_name == pool and deployment.entrypoint == spec["entrypoint"]
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}]
            assert deployment.parameters == spec["parameters"]
            assert deployment.global_concurrency_limit.limit == spec["concurrency_limit"]["limit"] == 1
            assert deployment.concurrency_options.collision_strategy.value == spec["concurrency_limit"]["collision_strategy"]
            [schedule] = deployment.schedules
            assert schedule.active and schedule.schedule.cron == params.retrain.cron

            with background(worker_command, worker_dir, worker_env, worker_log) as worker:
                runs = DeploymentRuns(client, deployment.id, worker, [worker_log, server_log])
                try:
                    _overlapping_runs(client, runs, pool, data_md5, history, history_before,
                                      redeploy_without_repo=lambda: prefect_cli(deploy, checkout, env))
                finally:
                    runs.clean_up()


def _overlapping_runs(client, runs: DeploymentRuns, pool: str, data_md5: str, history: Path, history_before: bytes,
                      redeploy_without_repo: Callable[[], object]):
    # Something else (say `scenegan retrain` by hand) holds the flow's global limit.
    client.upsert_global_concurrency_limit_by_name(RETRAIN_CONCURRENCY_LIMIT, 1)
    runs.hold_global_limit()

    first = runs.start()
    runs.wait_for(first, lambda state: state.is_running(), "Running")
    first_running = time.monotonic()

    # A second run while the first holds the deployment's slot: cancelled, never started.
    second = runs.wait_for(runs.start(), lambda state: state.is_final(), "finished")
    assert second.state.is_cancelled(), second.state
    assert "concurrency limit" in (second.state.message or ""), second.state.message
    assert [state.type.value for state in client.read_flow_run_states(second.id)] == ["SCHEDULED", "CANCELLED"]
    assert second.infrastructure_pid is None
    assert "prefect.worker.name" not in second.labels  # no worker took it

    # The first waits for the global limit (long enough to have done its work otherwise), then does its work.
    time.sleep(max(0.0, first_running + HOLD_S - time.monotonic()))
    assert client.read_flow_run(first).state.is_running()
    released = datetime.now(timezone.utc)
    runs.release_global_limit()
    done = runs.wait_for(first, lambda state: state.is_final(), "finished")
    assert done.state.is_completed(), f"{done.state!r}\n{runs.logs()}"
    assert done.labels["prefect.worker.name"] == WORKER_NAME and done.work_pool_name == pool
    assert done.name == f"retrain · data {data_md5[:8]}"  # named from the checkout's data.dvc
    assert f"nothing to do: dataset version {data_md5} was already retrained" in runs.run_logs(first, "nothing to do")
    assert history.read_bytes() == history_before
    assert runs.task_started(first, "refresh-dataset-version") > released

    # The deployment's slot came back: the next run is not cancelled.
    assert client.read_deployment(runs.deployment_id).global_concurrency_limit.active_slots == 0
    # Deployed without SCENEGAN_REPO, the pull step keeps the placeholder; the worker's value fills it in.
    redeploy_without_repo()
    assert client.read_deployment(runs.deployment_id).pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SCENEGAN_REPO }}"}}]
    third = runs.wait_for(runs.start(), lambda state: state.is_final(), "finished")
    assert third.state.is_completed(), f"{third.state!r}\n{runs.logs()}"

    assert runs.all_ids() == set(runs.started)  # none from the schedule
    assert history.read_bytes() == history_before


class DeploymentRuns:
    """Runs of one deployment started by the test, watched through the API; cleaned up however the test ends."""

    def __init__(self, client, deployment_id, worker: subprocess.Popen, log_paths: list[Path]):
        self.client, self.deployment_id, self.worker, self.log_paths = client, deployment_id, worker, log_paths
        self.started: list = []
        self.lease = None

    def start(self):
        flow_run = self.client.create_flow_run_from_deployment(self.deployment_id)
        self.started.append(flow_run.id)
        return flow_run.id

    def wait_for(self, run_id, done: Callable, what: str):
        deadline = time.monotonic() + STATE_TIMEOUT_S
        while True:
            flow_run = self.client.read_flow_run(run_id)
            if done(flow_run.state):
                return flow_run
            assert self.worker.poll() is None, f"the worker exited ({self.worker.returncode})\n{self.logs()}"
            assert time.monotonic() < deadline, f"run {flow_run.name} is {flow_run.state!r}, not {what}\n{self.logs()}"
            time.sleep(0.25)

    def run_logs(self, run_id, expected: str, timeout_s: float = 15.0) -> str:
        """The run's log; its lines reach the server in batches, so wait for `expected` a while."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        deadline = time.monotonic() + timeout_s
        while True:
            found = self.client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            text = "\n".join(log.message for log in found)
            if expected in text or time.monotonic() > deadline:
                return text
            time.sleep(0.25)

    def task_started(self, run_id, task_name: str, timeout_s: float = 15.0) -> datetime:
        """When the run's task started (task runs are recorded from events: wait for it a while)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        deadline = time.monotonic() + timeout_s
        while True:
            found = self.client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            starts = [task_run.start_time for task_run in found if task_run.name.startswith(task_name)]
            if starts and starts[0] is not None:
                return starts[0]
            assert time.monotonic() < deadline, f"no start of {task_name} in {[t.name for t in found]}"
            time.sleep(0.25)

    def all_ids(self) -> set:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

        found = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[self.deployment_id])))
        return {flow_run.id for flow_run in found}

    def hold_global_limit(self) -> None:
        response = self.client.increment_concurrency_slots_with_lease(
            names=[RETRAIN_CONCURRENCY_LIMIT], slots=1, mode="concurrency", lease_duration=300)
        self.lease = response.json()["lease_id"]

    def release_global_limit(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            self.client.release_concurrency_slots_with_lease(lease)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{tail(path)}" for path in self.log_paths)

    def clean_up(self) -> None:
        """Let a waiting run go; flow-run processes have their own process group: end any the worker left."""
        with contextlib.suppress(Exception):
            self.release_global_limit()
        for run_id in self.started:
            with contextlib.suppress(Exception):
                flow_run = self.client.read_flow_run(run_id)
                if flow_run.state.is_final() or not flow_run.infrastructure_pid:
                    continue
                pid = int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])
                if "prefect" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.killpg(pid, signal.SIGTERM)
