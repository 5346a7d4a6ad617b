"""Running a long child process with its output forwarded, line by line, to a logger.

Used where a stage must be a separate process (DVC experiments, torchrun
ranks): its progress still reaches the Prefect run log as it happens.

However the caller stops (Ctrl-C, a Prefect cancellation, an exception in the
log callback, or the child simply exiting), nothing the command started is
left running: training ranks left behind would keep a GPU busy and keep
writing checkpoints nobody reads. The command runs in its own session
(process group), and every process of its tree is remembered before the end,
because torchrun starts each rank in a session of its own, where a signal to
the launcher's group does not reach it.
"""

from __future__ import annotations

import codecs
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ganlib.io.processes import process_stat
from ganlib.logs import Logger

# SIGTERM first, so that torchrun can stop its ranks and DVC can clean up; SIGKILL after this.
TERMINATE_GRACE_S = 20.0
_POLL_S = 0.1
_EXITED_SILENCE_S = 0.5  # output still arriving this long after the command exited is a leftover's, not its

# A process as (pid, start time in clock ticks since boot): a pid alone may be reused meanwhile.
Process = tuple[int, int]


def run_logged(
    command: Sequence[str], cwd: Path, log: Logger, tail_lines: int = 30, grace_s: float = TERMINATE_GRACE_S
) -> tuple[int, list[str]]:
    """Run `command`, logging each non-empty output line; return (exit status, its last lines).

    On return or on any exception, whatever the command started and left
    running is sent SIGTERM, and SIGKILL after `grace_s` seconds.
    """
    process = subprocess.Popen(
        list(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    tail: deque[str] = deque(maxlen=tail_lines)
    try:
        for line in _output_lines(process):
            line = line.rstrip()
            if line:
                log.info("%s", line)
                tail.append(line)
        status = process.wait()
    except BaseException:
        end_command(process, grace_s)
        raise
    leftovers = _live(_processes_in_group(process.pid))
    if leftovers:
        log.warning("%s exited and left %d process(es) running; stopping them", command[0], len(leftovers))
        end_command(process, grace_s)
    process.stdout.close()
    return status, list(tail)


def _output_lines(process: subprocess.Popen) -> Iterator[str]:
    """The lines `process` writes, until its output closes or it has exited _EXITED_SILENCE_S ago.

    A background process it left behind may hold the pipe open (and even keep
    writing) for ever: waiting for the end of the output alone would then never
    return. What the command itself wrote is in the pipe by the time it exits.
    """
    assert process.stdout is not None
    pipe = process.stdout.fileno()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            if exited_at is None and process.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > _EXITED_SILENCE_S:
                break
            if not selector.select(timeout=_EXITED_SILENCE_S):
                continue
            chunk = os.read(pipe, 1 << 16)
            if not chunk:
                break
            # Progress bars end lines with \r; a \r\n split across reads only adds an empty line (skipped).
            pending += decoder.decode(chunk).replace("\r\n", "\n").replace("\r", "\n")
            *lines, pending = pending.split("\n")
            yield from lines
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def end_command(process: subprocess.Popen, grace_s: float = TERMINATE_GRACE_S) -> None:
    """Stop `process` (a session leader) and every process it started: SIGTERM, then SIGKILL after `grace_s`."""
    group = process.pid  # start_new_session: its process group id is its pid
    started = _descendants(process.pid) | _processes_in_group(group)  # before anything exits and is reparented
    _signal(group, started, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (process.poll() is None or _live(started | _processes_in_group(group))):
        time.sleep(_POLL_S)
    if process.poll() is None or _live(started | _processes_in_group(group)):
        # Anything started since the first look, under what is still alive, goes too.
        started |= set().union(*(_descendants(pid) for pid, _ in _live(started)))
        _signal(group, started, signal.SIGKILL)
    try:
        process.wait(timeout=max(grace_s, 1.0))
    finally:
        if process.stdout is not None:
            process.stdout.close()


def _signal(group: int, processes: Iterable[Process], signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):  # the group is already empty
        pass
    for pid, _ in _live(processes):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------- the process table (Linux /proc; elsewhere empty)
# Without /proc only the command's own process group is stopped, which covers
# everything that does not start a session of its own.


def _process_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (parent pid, process group, start time, state) of every process we can see."""
    table = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = process_stat(entry.name)
        except OSError:  # gone meanwhile
            continue
        table[int(entry.name)] = (stat.parent, stat.group, stat.start_ticks, stat.state)
    return table


def _descendants(root: int) -> set[Process]:
    """`root` and every process below it, as (pid, start time)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.add((pid, table[pid][2]))
            todo.extend(children.get(pid, ()))
    return found


def _processes_in_group(group: int) -> set[Process]:
    return {(pid, started) for pid, (_, pgrp, started, _) in _process_table().items() if pgrp == group}


def _live(processes: Iterable[Process]) -> set[Process]:
    """Those of `processes` still running: not exited, not a zombie, and not a new process with a reused pid."""
    table = _process_table()
    return {(pid, started) for pid, started in processes
            if pid in table and table[pid][2] == started and table[pid][3] not in ("Z", "X")}
