"""Exec a command that the kernel stops when the process that started it dies.

    python flows/parent_death.py STARTER_PID -- COMMAND [ARG...]

A helper process (a Prefect server, the command of `python -m flows.server`)
must not outlive the process that started it, even when that process is
SIGKILLed and has no chance to clean up. Linux's PR_SET_PDEATHSIG asks the
kernel to send a signal when the parent dies, and it survives exec: this
script arms it (SIGTERM, so a server still shuts down in order), checks the
starter is still its parent (it may have died before the signal was armed),
then becomes the command. Doing this here, in a process of its own, rather
than in a `preexec_fn` keeps Python code out of the window between fork and
exec, which is unsafe when the starter has threads.

Caveats, by the kernel's rules: the signal follows the starter's *thread*
that forked, so start helpers from a thread that lives as long as the
process (the main thread); and it does not pass to the command's own
children (the Prefect server runs in one process). Elsewhere than Linux the
command simply runs.

Run by path, not as `-m`: it imports nothing from the project, so it works
from any working directory.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
COMMAND_NOT_FOUND = 127  # what a shell returns, so callers see a familiar status
STARTER_GONE = 128 + signal.SIGTERM  # as if the signal had arrived


def launcher_command(command: Sequence[str], starter_pid: int | None = None) -> list[str]:
    """`command` wrapped so that it is stopped when `starter_pid` (default: this process) dies."""
    starter = os.getpid() if starter_pid is None else starter_pid
    return [sys.executable, str(Path(__file__).resolve()), str(starter), "--", *command]


def arm_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    return True


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python flows/parent_death.py STARTER_PID -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    starter, command = int(argv[0]), list(argv[2:])
    armed = arm_parent_death_signal(signal.SIGTERM)
    # Armed too late if the starter is already gone: this process was handed to init (or a
    # subreaper) and no signal will ever come, so do not start the command at all.
    if armed and os.getppid() != starter:
        return STARTER_GONE
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"parent_death: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return COMMAND_NOT_FOUND
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
