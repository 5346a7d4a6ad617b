"""Where a result came from: the dataset version (DVC md5) and the code/params."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

# The dataset version: DVC's record of base.paths.raw, at the repository root.
DATA_DVC_FILE = "data.dvc"


def dvc_tracked_md5(dvc_file: str | Path) -> str | None:
    """The md5 recorded in a `.dvc` file for its (single) output, or None.

    For a directory DVC records e.g. "3f2a...c1.dir"; we keep the suffix off
    so the value reads the same for files and directories.
    """
    path = Path(dvc_file)
    if not path.is_file():
        return None
    return dvc_file_md5(yaml.safe_load(path.read_text()))


def dvc_file_md5(dvc_file: Mapping[str, Any] | None) -> str | None:
    """The md5 of a `.dvc` file's (single) output, from its parsed YAML (e.g. read at a git revision), or None."""
    outs = (dvc_file or {}).get("outs") or []
    if not outs or not isinstance(outs[0], Mapping) or "md5" not in outs[0]:
        return None
    return str(outs[0]["md5"]).removesuffix(".dir")


def short_md5(md5: Any, length: int = 8) -> str:
    """A dataset version as people read it: the md5's first `length` characters, "untracked" without one."""
    return str(md5)[:length] if md5 else "untracked"
