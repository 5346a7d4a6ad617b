"""Running a long child process with its output forwarded, line by line, to a logger.

Used where a stage must be a separate process (DVC experiments, torchrun
ranks): its progress still reaches the Prefect run log as it happens.
"""

from __future__ import annotations

import subprocess
from collections import deque
from pathlib import Path
from typing import Sequence

from ganlib.logs import Logger


def run_logged(command: Sequence[str], cwd: Path, log: Logger, tail_lines: int = 30) -> tuple[int, list[str]]:
    """Run `command`, logging each non-empty output line; return (exit status, its last lines)."""
    process = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: deque[str] = deque(maxlen=tail_lines)
    for line in process.stdout:
        line = line.rstrip()
        if line:
            log.info("%s", line)
            tail.append(line)
    return process.wait(), list(tail)
