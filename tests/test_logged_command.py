"""run_logged leaves nothing running: a real torchrun with two ranks, stopped from the caller's side."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ganlib.io.logged_command import run_logged
from ganlib.logs import plain_logger

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads ranks' states from /proc (Linux)")

# A rank that announces itself and sleeps; IGNORE_TERM makes it ignore SIGTERM, so only SIGKILL ends it.
RANK = textwrap.dedent(
    """
    import os, signal, sys, time
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"rank {os.environ['RANK']} pid {os.getpid()}", flush=True)
    time.sleep(600)
    """
)


def torchrun(script: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]


def rank_pids(line: str) -> dict[str, int]:
    """rank -> pid announced in a line; two ranks writing at once can share one line."""
    return {rank: int(pid) for rank, pid in re.findall(r"rank (\d+) pid (\d+)", line)}


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie holds no GPU, memory or files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_until_gone(pids: list[int], timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if running(pid)]


class FirstLines:
    """A log callback keeping only the first few lines (a leftover may write thousands)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, fmt: str, line: str) -> None:
        if len(self.lines) < 1000:
            self.lines.append(line)

    def warning(self, *args) -> None:
        pass


class RanksThenFail:
    """A log callback that collects rank pids and raises once both ranks are up (an exception in the callback)."""

    def __init__(self) -> None:
        self.ranks: dict[str, int] = {}

    def info(self, fmt: str, line: str) -> None:
        self.ranks.update(rank_pids(line))
        if len(self.ranks) == 2:
            raise RuntimeError("the log callback failed")

    def warning(self, *args) -> None:
        pass


def test_an_exception_in_the_log_callback_stops_every_rank_even_one_that_ignores_sigterm(tmp_path, monkeypatch):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    monkeypatch.setenv("IGNORE_TERM", "1")
    log = RanksThenFail()
    with pytest.raises(RuntimeError, match="the log callback failed"):
        run_logged(torchrun(script), tmp_path, log, grace_s=3)
    assert sorted(log.ranks) == ["0", "1"]
    # The grace is over and SIGKILL was sent before run_logged returned: nothing is left, no wait needed.
    assert [pid for pid in log.ranks.values() if running(pid)] == []


# How the caller is stopped: Ctrl-C, or a Prefect cancellation (the runner sends SIGTERM, which
# Prefect's flow engine turns into a TerminationSignal exception in the flow's process).
STOPS = {
    # A terminal's Ctrl-C; the handler is set because a caller that inherits SIGINT ignored (as under
    # pytest-xdist's workers) would never see it.
    "ctrl-c": (signal.SIGINT, "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n",
               "KeyboardInterrupt"),
    "prefect-cancellation": (
        signal.SIGTERM,
        "import signal\n"
        "from prefect.exceptions import TerminationSignal\n"
        "def bridge(signum, frame):\n"
        "    raise TerminationSignal(signum)\n"
        "signal.signal(signal.SIGTERM, bridge)\n",
        "TerminationSignal",
    ),
}


def start_caller(caller: str) -> tuple[subprocess.Popen, list[int], list[str]]:
    """Start `caller` (Python source) as a process of its own; return once both ranks announced their pids."""
    process = subprocess.Popen(
        [sys.executable, "-c", caller], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    ranks: list[int] = []
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        ranks.extend(rank_pids(line).values())
        if len(ranks) == 2:
            return process, ranks, output
    process.kill()
    raise AssertionError("the ranks never announced themselves:\n" + "".join(output))


@pytest.mark.parametrize("stop", sorted(STOPS))
def test_stopping_the_caller_stops_the_launcher_and_its_ranks(tmp_path, stop):
    """The caller is its own process here, so that a real signal can be sent to it."""
    signum, setup, exception = STOPS[stop]
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    caller = setup + textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ganlib.io.logged_command import run_logged
        from ganlib.logs import plain_logger
        try:
            run_logged({torchrun(script)!r}, Path({str(tmp_path)!r}), plain_logger("caller"))
        except BaseException as exc:
            print("caller stopped by", type(exc).__name__, flush=True)
            sys.exit(130)
        """
    )
    process, ranks, output = start_caller(caller)
    try:
        process.send_signal(signum)
        output.extend(process.stdout)
        assert process.wait(timeout=120) == 130, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"caller stopped by {exception}" in "".join(output)
    assert wait_until_gone(ranks, timeout=5) == []


def test_a_finished_command_returns_its_status_and_last_lines(tmp_path):
    status, tail = run_logged([sys.executable, "-c", "print('a'); print(); print('b'); raise SystemExit(3)"],
                              tmp_path, plain_logger("test"), tail_lines=1)
    assert (status, tail) == (3, ["b"])


@pytest.mark.parametrize("leftover", ["import time; time.sleep(600)", "while True: print('still here', flush=True)"])
def test_a_background_process_left_by_a_finished_command_is_stopped(tmp_path, leftover):
    """Even one that holds the output pipe and keeps writing to it."""
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {leftover!r}])\n"
        "print(child.pid, flush=True)\n"
    )
    log = FirstLines()
    status, _ = run_logged([sys.executable, "-c", code], tmp_path, log, grace_s=5)
    assert status == 0
    pid = int(next(line for line in log.lines if line.isdigit()))
    assert wait_until_gone([pid], timeout=5) == []


def test_a_sigkilled_caller_takes_torchrun_and_its_ranks_with_it(tmp_path):
    """No finally runs after SIGKILL: the launcher wrapper (flows/parent_death.py) has the kernel stop
    torchrun when its caller dies, and torchrun stops its ranks."""
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    caller = textwrap.dedent(
        f"""
        from pathlib import Path
        from flows.parent_death import launcher_command
        from ganlib.io.logged_command import run_logged
        from ganlib.logs import plain_logger
        run_logged(launcher_command({torchrun(script)!r}), Path({str(tmp_path)!r}), plain_logger("caller"))
        """
    )
    process, ranks, output = start_caller(caller)
    try:
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert wait_until_gone(ranks, timeout=60) == [], "".join(output)
