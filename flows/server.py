"""Run a command with one Prefect server up for its whole duration: `python -m flows.server -- dvc repro`.

Without PREFECT_API_URL each flow run starts a temporary server of its own
(7-9 s here), so a four-stage `dvc repro` pays that four times. `make demo`
runs `dvc repro` through this instead: one server on a free loopback port,
started once, stopped when the command ends (whatever way it ends). Runs are
stored in Prefect's database as usual, so `make ui` shows them afterwards.
With PREFECT_API_URL already set, the command simply runs against that server.
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
from pathlib import Path
from typing import Sequence

from flows.offline import keep_prefect_offline

STARTUP_TIMEOUT_S = 120.0


def run_with_server(command: Sequence[str]) -> int:
    """The command's exit status, run with PREFECT_API_URL pointing at a server that lives as long as it does."""
    keep_prefect_offline()
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(list(command))
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with tempfile.TemporaryDirectory(prefix="scenegan-prefect-server-") as scratch:
        log_path = Path(scratch) / "server.log"
        with open(log_path, "wb") as log_file:
            server = subprocess.Popen(
                [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PREFECT_UI_API_URL=api_url), start_new_session=True,
            )
        try:
            wait_until_healthy(api_url, server, log_path)
            print(f"Prefect server for this command: {api_url}", flush=True)
            return subprocess.call(list(command), env=dict(os.environ, PREFECT_API_URL=api_url))
        finally:
            stop_process_group(server)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefect_executable() -> str:
    beside_python = Path(sys.executable).with_name("prefect")
    return str(beside_python) if beside_python.exists() else (shutil.which("prefect") or "prefect")


def wait_until_healthy(api_url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the Prefect server exited ({server.returncode}) before it was ready:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the Prefect server did not answer on {api_url} within {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


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
