"""Runs whose process was killed: marked Crashed when the next flow starts on the same host.

A flow run whose process is SIGKILLed (or loses its machine) cannot report
its end, so Prefect shows it Running forever. Every flow of this project
carries `record_and_reconcile` as an on-running hook, which does two things
as the run starts:

1. it labels its own run with the process that runs it: host name, machine
   id, boot id, PID namespace, pid and the pid's start time;
2. it looks at every Running flow run that carries such labels and marks
   Crashed those it can prove dead: recorded on this host (same name and
   machine id) and either the machine rebooted since (other boot id), or, in
   this boot and PID namespace, no process has that pid with that start time
   (the start time tells a reused pid apart). Their Running task runs are
   marked Crashed too. A run it cannot judge (another host, another
   container, no labels) is left as it is.

Why not Prefect's heartbeats with a "crash zombie flows" automation: that
needs a server that outlives the killed run and notices a missing heartbeat
after a window of minutes, while `python -m flows.stage` runs usually have a
server of their own that dies with them (flows/server.py). Proving the
process dead from the host itself is immediate and cannot crash a run that
is alive elsewhere.

The label is written right after the run enters Running, so a kill in the
few milliseconds between the two leaves a run this cannot judge. The checks
read /proc: elsewhere than Linux nothing is recorded or reconciled.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from uuid import UUID

from ganlib.io.processes import process_stat

if TYPE_CHECKING:  # Prefect is imported when a run needs it, not when the CLI builds its parser
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

LABEL_PREFIX = "scenegan.process."
PAGE = 200  # the server's default page size


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells one process apart from every other, on any host, across reboots and pid reuse."""

    host: str
    machine: str
    boot: str
    pid_namespace: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: clock ticks after boot

    def to_labels(self) -> dict[str, str]:
        return {LABEL_PREFIX + name: str(value) for name, value in asdict(self).items()}

    @classmethod
    def from_labels(cls, labels: Mapping[str, Any] | None) -> ProcessIdentity | None:
        """The identity recorded in a run's labels, or None when it has none (or a damaged one)."""
        try:
            values = {field.name: str(labels[LABEL_PREFIX + field.name]) for field in fields(cls)}  # type: ignore[index]
            identity = cls(**{**values, "pid": int(values["pid"]), "start_ticks": int(values["start_ticks"])})
        except (KeyError, TypeError, ValueError):
            return None
        return identity if identity.pid > 0 else None


def this_process() -> ProcessIdentity | None:
    """This process's identity, or None where /proc does not give one."""
    try:
        start = process_start_ticks(os.getpid())
        if start is None:
            return None
        return ProcessIdentity(
            host=socket.gethostname(),
            machine=_read_text(Path("/etc/machine-id")),
            boot=_read_text(Path("/proc/sys/kernel/random/boot_id")),
            pid_namespace=os.readlink("/proc/self/ns/pid"),
            pid=os.getpid(),
            start_ticks=start,
        )
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """When the process `pid` started (clock ticks after boot), or None if there is none (a zombie counts as none).

    Raises PermissionError for a process that exists but /proc hides (another
    user's, with /proc mounted hidepid): nothing can be said about it.
    """
    try:
        stat = process_stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        try:
            os.kill(pid, 0)  # signal 0 only asks whether the pid exists
        except ProcessLookupError:
            return None
        raise PermissionError(f"process {pid} exists but /proc does not show it")
    return None if stat.ended else stat.start_ticks


def why_dead(recorded: ProcessIdentity, here: ProcessIdentity) -> str | None:
    """Why the recorded process is certainly gone, judged from `here`; None if it may be alive."""
    if (recorded.host, recorded.machine) != (here.host, here.machine):
        return None  # another host: not ours to judge
    if recorded.boot != here.boot:
        # The same host in another boot, if a machine id says it is the same host and not a namesake.
        return f"{recorded.host} has restarted since" if recorded.machine else None
    if recorded.pid_namespace != here.pid_namespace:
        return None  # another container on this kernel: its pids are not ours
    try:
        start = process_start_ticks(recorded.pid)
    except PermissionError:
        return None
    if start is None:
        return f"process {recorded.pid} on {recorded.host} is gone"
    if start != recorded.start_ticks:
        return f"process {recorded.pid} on {recorded.host} is gone (the pid now belongs to another process)"
    return None


def crash_dead_runs(client: SyncPrefectClient, here: ProcessIdentity) -> list[UUID]:
    """Mark Crashed every Running flow run (and its Running task runs) whose recorded process is dead.

    Returns the ids of the runs it marked.
    """
    crashed: list[UUID] = []
    for run in _running_flow_runs(client):
        recorded = ProcessIdentity.from_labels(run.labels)
        reason = why_dead(recorded, here) if recorded else None
        if reason is not None:
            _crash_flow_run(client, run.id, f"{reason}: marked Crashed by scenegan when a later run started")
            crashed.append(run.id)
    return crashed


def _running_flow_runs(client: SyncPrefectClient) -> list[FlowRun]:
    """Every Running flow run, read in full before any is changed (so paging sees a fixed set)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    running = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))
    runs: list[FlowRun] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=running, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=len(runs))
        runs += page
        if len(page) < PAGE:
            return runs


def _crash_flow_run(client: SyncPrefectClient, flow_run_id: UUID, message: str) -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))),
    )
    for task_run in task_runs:
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


def record_and_reconcile(flow: Any, flow_run: FlowRun, state: Any) -> None:
    """On-running hook: label this run with its process, then crash this host's runs whose process is gone."""
    from prefect.client.orchestration import get_client
    from prefect.logging.loggers import flow_run_logger

    here = this_process()
    if here is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(flow_run.id, here.to_labels())
        crashed = crash_dead_runs(client, here)
    if crashed:
        flow_run_logger(flow_run, flow).warning(
            "marked %d earlier run(s) Crashed: their process was killed (%s)",
            len(crashed), ", ".join(str(run_id) for run_id in crashed),
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
