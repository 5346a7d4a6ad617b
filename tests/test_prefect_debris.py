"""A killed run leaves no debris; nothing Prefect persists is a pickle.

- `python -m flows.stage` SIGKILLed while its flow run is Running: the
  Prefect server it started goes too, and the next run marks the old one
  Crashed (flows/server.py, flows/parent_death.py, flows/reconcile.py);
- `python -m flows.server -- CMD` SIGKILLed: its server and CMD go too;
- the reconciler crashes only runs whose process it can prove gone;
- a failing task in a real flow run leaves JSON, never a pickle, in the
  result storage.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
from conftest import REPO_ROOT, run

from flows.parent_death import COMMAND_NOT_FOUND, STARTER_GONE, launcher_command
from flows.reconcile import ProcessIdentity, crash_dead_runs, process_start_ticks, this_process, why_dead

DEADLINE_S = 120.0
linux_only = pytest.mark.skipif(this_process() is None, reason="needs Linux /proc")


# ---------------------------------------------------------------- helpers


def wait_for(what: str, check: Callable[[], object], timeout_s: float = DEADLINE_S, every_s: float = 0.25):
    """check()'s first truthy value, polled until the deadline; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def alive(pid: int, start_ticks: int) -> bool:
    """The process `pid` that started at `start_ticks` still runs (a zombie or a reused pid does not count)."""
    return process_start_ticks(pid) == start_ticks


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes (of this user) started with name=value in their environment."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in environ and process_start_ticks(int(entry.name)) is not None:
                found.append(int(entry.name))
    return found


def own_server_env(home: Path) -> dict[str, str]:
    """No PREFECT_API_URL, so a stage starts a server of its own, on a database in `home`."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def api_get(api_url: str, path: str) -> dict:
    with urllib.request.urlopen(f"{api_url}{path}", timeout=10) as response:
        return json.loads(response.read())


def dead_process_identity() -> ProcessIdentity:
    """The identity a process of this host had, taken while it ran; it has exited (and been reaped) since."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = process_start_ticks(child.pid)
    child.communicate(b"")
    here = this_process()
    return replace(here, pid=child.pid, start_ticks=start)


# ---------------------------------------------------------------- the reconciler's judgement


@linux_only
def test_process_identity_round_trips_through_run_labels():
    here = this_process()
    assert here.pid == os.getpid() and here.start_ticks == process_start_ticks(os.getpid())
    labels = {"other": "kept apart", **here.to_labels()}
    assert ProcessIdentity.from_labels(labels) == here
    assert ProcessIdentity.from_labels({}) is None and ProcessIdentity.from_labels(None) is None
    for damaged in ("not a pid", "0", "-1"):
        assert ProcessIdentity.from_labels({**here.to_labels(), "scenegan.process.pid": damaged}) is None


@linux_only
def test_only_a_process_proven_gone_on_this_host_counts_as_dead():
    here = this_process()
    dead = dead_process_identity()
    assert why_dead(here, here) is None  # this very process
    assert "is gone" in why_dead(dead, here)
    # The pid now runs something else (it was reused): a different start time gives it away.
    assert "another process" in why_dead(replace(here, start_ticks=here.start_ticks + 1), here)
    assert "restarted" in why_dead(replace(dead, boot="an earlier boot"), here)
    # Not provable from here: another host, a namesake host, another container on this kernel.
    assert why_dead(replace(dead, host="elsewhere"), here) is None
    assert why_dead(replace(dead, machine="another machine id"), here) is None
    assert why_dead(replace(dead, pid_namespace="pid:[1]"), here) is None
    # Without a machine id a reboot cannot be told from a namesake host.
    assert why_dead(replace(dead, machine="", boot="an earlier boot"), replace(here, machine="")) is None


@linux_only
def test_reconciler_crashes_dead_runs_and_their_running_tasks_only(prefect_api_url):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    @flow(name="debris-probe")
    def probe() -> None:
        pass

    @task(name="debris-probe-task")
    def probe_task() -> None:
        pass

    here, dead = this_process(), dead_process_identity()
    with get_client(sync_client=True) as client:
        def running_run(labels: dict[str, str]):
            run = client.create_flow_run(probe, state=Running())
            if labels:
                client.update_flow_run_labels(run.id, labels)
            return run.id

        killed = running_run(dead.to_labels())
        killed_task = client.create_task_run(probe_task, flow_run_id=killed, dynamic_key="0", state=Running()).id
        live = running_run(here.to_labels())
        elsewhere = running_run(replace(dead, host="elsewhere").to_labels())
        unlabelled = running_run({})

        crashed = crash_dead_runs(client, here)

        assert killed in crashed and not {live, elsewhere, unlabelled} & set(crashed)
        state = client.read_flow_run(killed).state
        assert state.type == StateType.CRASHED and "is gone" in state.message
        assert client.read_task_run(killed_task).state.type == StateType.CRASHED
        for run_id in (live, elsewhere, unlabelled):
            assert client.read_flow_run(run_id).state.type == StateType.RUNNING
        assert killed not in crash_dead_runs(client, here)  # done once


# ---------------------------------------------------------------- the parent-death launcher


def test_launcher_runs_nothing_when_its_starter_is_already_gone(tmp_path):
    marker = tmp_path / "ran"
    # Started by this process, but told its starter is another one: as if the starter died first.
    command = launcher_command([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], starter_pid=1)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if sys.platform.startswith("linux"):
        assert result.returncode == STARTER_GONE and not marker.exists()


def test_launcher_becomes_the_command_and_reports_a_missing_one(tmp_path):
    result = subprocess.run(launcher_command([sys.executable, "-c", "import os; print(os.getpid())"]),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().isdigit()
    missing = subprocess.run(launcher_command([str(tmp_path / "no-such-command")]), capture_output=True, text=True)
    assert missing.returncode == COMMAND_NOT_FOUND and "cannot run" in missing.stderr


# ---------------------------------------------------------------- a server of the process's own

OWN_SERVER_PROBE = """
import json, os, sys, urllib.request
from flows.server import call_with_prefect_api

def probe():
    url = os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings
    assert get_current_settings().api.url == url
    healthy = url.startswith("http://127.0.0.1:9/") or urllib.request.urlopen(url + "/health", timeout=5).read() == b"true"
    return url, healthy

url, healthy = call_with_prefect_api(probe)
print(json.dumps({"url": url, "healthy": healthy, "after": os.environ.get("PREFECT_API_URL")}))
"""


@pytest.mark.slow
def test_a_process_without_an_api_gets_a_server_of_its_own_for_the_block(tmp_path):
    env = own_server_env(tmp_path / "prefect-home")
    result = run([sys.executable, "-c", OWN_SERVER_PROBE], REPO_ROOT, env)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["healthy"] and seen["url"].startswith("http://127.0.0.1:") and seen["after"] is None
    with pytest.raises(OSError):  # stopped when the block ended
        urllib.request.urlopen(seen["url"] + "/health", timeout=2)
    assert processes_with_env("PREFECT_HOME", env["PREFECT_HOME"]) == []


def test_a_configured_api_is_used_as_it_is(tmp_path):
    env = dict(own_server_env(tmp_path / "prefect-home"), PREFECT_API_URL="http://127.0.0.1:9/api")
    seen = json.loads(run([sys.executable, "-c", OWN_SERVER_PROBE], REPO_ROOT, env).stdout.strip().splitlines()[-1])
    assert seen == {"url": "http://127.0.0.1:9/api", "healthy": True, "after": "http://127.0.0.1:9/api"}


# ---------------------------------------------------------------- SIGKILL, for real


@linux_only
@pytest.mark.slow
def test_flows_server_killed_takes_its_server_and_command_along(tmp_path):
    home = tmp_path / "prefect-home"
    log_path = tmp_path / "out.log"
    with open(log_path, "wb") as log:
        wrapper = subprocess.Popen([sys.executable, "-m", "flows.server", "--", "sleep", "600"], cwd=REPO_ROOT,
                                   env=own_server_env(home), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the server to be up", lambda: "Prefect server for this command" in log_path.read_text())
        # The server (started first) and the command, each with its start time so a reused pid is not mistaken.
        helpers = wait_for("both helpers", lambda: len(children_of(wrapper.pid)) == 2 and children_of(wrapper.pid))
        started = {pid: process_start_ticks(pid) for pid in helpers}
    finally:
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait()
    wait_for("the server and the command to stop", lambda: not any(alive(pid, t) for pid, t in started.items()), 60)
    assert processes_with_env("PREFECT_HOME", str(home)) == []


@linux_only
@pytest.mark.slow
def test_killed_stage_leaves_no_server_and_its_run_is_crashed_by_the_next(reproduced_project, tmp_path, monkeypatch):
    # Reproduced (conftest): the prepared data training needs is there. A stage that ends normally stops its
    # server too: checked below, after the next preprocess.
    root = reproduced_project
    home = tmp_path / "prefect-home"
    env = own_server_env(home)
    stage = [sys.executable, "-m", "flows.stage"]

    log_path = tmp_path / "train.log"
    with open(log_path, "wb") as log:
        train = subprocess.Popen(stage + ["train", "--set", "train.kimg=1000"], cwd=root, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        # Prefect logs the run's page on the stage's own server once it runs.
        link = re.compile(r"View at (http://127\.0\.0\.1:\d+)/runs/flow-run/([0-9a-f-]{36})")
        api_root, run_id = wait_for("the train run to start", lambda: link.search(log_path.read_text())).groups()
        api_url = f"{api_root}/api"

        def running_and_recorded() -> bool:
            flow_run = api_get(api_url, f"/flow_runs/{run_id}")
            return flow_run["state"]["type"] == "RUNNING" and "scenegan.process.pid" in flow_run["labels"]

        wait_for("the train run to be Running with its process recorded", running_and_recorded)
        [server] = [pid for pid in children_of(train.pid) if b"server\0start" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        server_started = process_start_ticks(server)
    finally:
        train.send_signal(signal.SIGKILL)
        train.wait()

    wait_for("the killed stage's server to stop", lambda: not alive(server, server_started), 60)
    wait_for("no process of the killed stage left", lambda: processes_with_env("PREFECT_HOME", str(home)) == [], 60)

    # Another stage starts (a server of its own again) and finds the killed run.
    again = run(stage + ["preprocess"], root, env)
    assert run_id in again.stdout + again.stderr, "the next run should say which run it marked Crashed"
    assert processes_with_env("PREFECT_HOME", str(home)) == []

    from flows.server import local_server

    monkeypatch.setenv("PREFECT_HOME", str(home))
    with local_server(ui=False) as checker:
        state = api_get(checker.wait_until_ready(), f"/flow_runs/{run_id}")["state"]
    assert state["type"] == "CRASHED" and "is gone" in state["message"], state


# ---------------------------------------------------------------- no pickle in result storage


def stored_results(storage: Path) -> dict[str, str]:
    return {path.name: path.read_bytes().decode("utf-8", errors="replace") for path in storage.rglob("*") if path.is_file()}


def assert_json_not_pickle(files: dict[str, str]) -> None:
    for name, text in files.items():
        assert "pickle" not in text, f"{name} was written by a pickle serializer: {text[:200]}"
        record = json.loads(text)  # a pickle (raw, or base64 as Prefect stores it) is not JSON
        assert "__exc_type__" in json.dumps(record), f"{name}: {text[:200]}"


def test_failing_stage_and_pipeline_runs_persist_json_not_pickle(project_copy, prefect_api_url, tmp_path):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.pipeline import PipelineOptions, pipeline_flow
    from flows.stage import stage_flow
    from ganlib.errors import UserFacingError

    storage = tmp_path / "storage"
    params_file = str(project_copy / "params.yaml")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        # No raw data in the project copy: the preprocess task fails, and so does its flow.
        with pytest.raises(UserFacingError):
            stage_flow("preprocess")(params_file=params_file, overrides=[])
        after_stage = stored_results(storage)
        # Nothing prepared: the pipeline's train task fails.
        with pytest.raises(UserFacingError):
            pipeline_flow(PipelineOptions(params_file=params_file, stages=["train"], record_in_dvc=False))
    files = stored_results(storage)
    # Prefect writes a failed flow run's exception whatever persist_result says: one record each, as JSON.
    assert len(after_stage) == 1 and len(files) == 2, files
    assert_json_not_pickle(files)
