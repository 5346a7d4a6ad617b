"""The few DVC operations the pipeline performs itself, through DVC's own CLI.

DVC's Python API covers reading (dvc.api); writing (add, pull, exp run) is
only stable through the command line, and `--json` output where we parse.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ganlib.errors import UserFacingError


class DvcError(UserFacingError):
    """A DVC command failed; the message carries its output."""


def dvc_executable() -> str:
    # Prefer the dvc installed beside this interpreter (the project's venv).
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


def run_dvc(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([dvc_executable(), *args], cwd=cwd, text=True, capture_output=True)
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise DvcError(f"`dvc {' '.join(args)}` failed in {cwd} (exit {result.returncode}):\n{output}")
    return result


def run_dvc_json(args: list[str], cwd: Path) -> Any:
    return json.loads(run_dvc([*args, "--json"], cwd).stdout or "null")


def has_default_remote(cwd: Path) -> bool:
    # Without one, `dvc remote default` exits 1 and says so on stdout.
    result = run_dvc(["remote", "default"], cwd, check=False)
    return result.returncode == 0 and bool(result.stdout.strip())
