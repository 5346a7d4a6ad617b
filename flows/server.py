"""A Prefect server that lives exactly as long as the process that needs it.

`python -m flows.server -- dvc repro` runs a command with one server up for
its whole duration: without PREFECT_API_URL each flow run would start a
temporary server of its own (7-9 s here), so a four-stage `dvc repro` would
pay that four times. `make demo` runs `dvc repro` through this. Runs are
stored in Prefect's database as usual, so `make ui` shows them afterwards.
With PREFECT_API_URL already set, the command simply runs against that server.

`prefect_api_for_process()` gives one process (a `python -m flows.stage`
run) a server of its own when PREFECT_API_URL is not set. It replaces
Prefect's built-in temporary server, which outlives a SIGKILLed parent
(each kill used to leave a ~200 MB uvicorn behind): the servers started
here are `prefect server start` under flows/parent_death.py, so the kernel
stops them when their starter dies, however it dies, and they are stopped in
order when it exits normally.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TypeVar

from flows.offline import keep_prefect_offline
from flows.parent_death import launcher_command

STARTUP_TIMEOUT_S = 120.0
T = TypeVar("T")


@dataclass
class LocalServer:
    """A started (not necessarily ready) server: its API URL, process and log."""

    api_url: str
    process: subprocess.Popen
    log: BinaryIO

    def wait_until_ready(self) -> str:
        wait_until_healthy(self.api_url, self.process, self.log)
        return self.api_url


@contextmanager
def local_server(ui: bool) -> Iterator[LocalServer]:
    """`prefect server start` on a free loopback port, tied to this process; stopped when the block ends.

    Yields at once, before the server answers, so the caller can do other work
    (imports) during the seconds it takes to start; call wait_until_ready().
    """
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_command = [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    if not ui:
        # What Prefect's own temporary server leaves out: a UI, and turning deployments' schedules into runs.
        server_command += ["--no-ui", "--no-scheduler", "--no-late-runs"]
    # An unlinked file: a killed parent leaves no log behind, yet a failed start can still show its tail.
    with tempfile.TemporaryFile(prefix="scenegan-prefect-server-") as log:
        process = subprocess.Popen(
            launcher_command(server_command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, PREFECT_UI_API_URL=api_url),
            # Its own session: a Ctrl-C meant for the flow must not stop the server the flow reports its end to.
            start_new_session=True,
        )
        try:
            yield LocalServer(api_url, process, log)
        finally:
            stop_process_group(process)


@contextmanager
def prefect_api_for_process() -> Iterator[LocalServer | None]:
    """A Prefect API for this process: the one configured (yields None), or a server of its own (yields it).

    Configured means anywhere Prefect looks (PREFECT_API_URL in the
    environment, the active profile, a settings context such as a test
    harness). Otherwise the server started here is this process's until the
    block ends; call wait_until_ready() before the first flow run. Call from
    the main thread (see flows/parent_death.py).
    """
    keep_prefect_offline()
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        yield None
        return
    with local_server(ui=False) as server, _api_url_for_process(server.api_url):
        try:
            yield server
        finally:
            _send_queued_logs_and_events()


@contextmanager
def _api_url_for_process(api_url: str) -> Iterator[None]:
    """PREFECT_API_URL=api_url for children (the environment), this thread (a settings context) and
    threads Prefect starts without a context (its process-wide settings, which it reads at import)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    refresh_global_settings_context()
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        refresh_global_settings_context()


def call_with_prefect_api(run: Callable[[], T]) -> T:
    """run()'s result, run with PREFECT_API_URL set: the one given, or a server of this process's own."""
    with prefect_api_for_process() as own_server:
        if own_server is not None:
            own_server.wait_until_ready()
        return run()


def _send_queued_logs_and_events(timeout_s: float = 10.0) -> None:
    """Prefect sends logs and task-run states in batches from background workers, which it would drain
    at interpreter exit; this server stops before then, so drain them while it still answers."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)


def run_with_server(command: Sequence[str]) -> int:
    """The command's exit status, run with PREFECT_API_URL pointing at a server that lives as long as it does."""
    keep_prefect_offline()
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(list(command))
    with local_server(ui=True) as server:
        api_url = server.wait_until_ready()
        print(f"Prefect server for this command: {api_url}", flush=True)
        # The command, too, is stopped if this process is killed: it would fail without its server anyway.
        return subprocess.call(launcher_command(command), env=dict(os.environ, PREFECT_API_URL=api_url))


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefect_executable() -> str:
    beside_python = Path(sys.executable).with_name("prefect")
    return str(beside_python) if beside_python.exists() else (shutil.which("prefect") or "prefect")


def wait_until_healthy(api_url: str, server: subprocess.Popen, log: Path | BinaryIO) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the Prefect server exited ({server.returncode}) before it was ready:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the Prefect server did not answer on {api_url} within {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def stop_process_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server and its children (uvicorn workers, services), then SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _tail(log: Path | BinaryIO, lines: int = 30) -> str:
    try:
        if isinstance(log, Path):
            text = log.read_text(errors="replace")
        else:
            log.seek(0)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.server", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. python -m flows.server -- dvc repro")
    return run_with_server(command)


if __name__ == "__main__":
    sys.exit(main())
