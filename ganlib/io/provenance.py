"""Where a result came from: the dataset version (DVC md5) and the code/params."""

from __future__ import annotations

import os
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


def dataset_md5(root: str | Path, raw: str | Path) -> str | None:
    """The md5 DVC records for the directory `raw` (relative to `root`), or None when nothing records it.

    `data.dvc` is the project's dataset version, but only while it tracks
    `raw` itself: with base.paths.raw pointed elsewhere it describes another
    folder, and naming its md5 would trace a result to the wrong dataset.
    The folder's own `<raw>.dvc` (what `dvc add <raw>` writes) is the other
    place DVC keeps it. A folder inside a tracked one has no md5 of its own: None.
    """
    dvc_file = dataset_dvc_file(root, raw)
    return None if dvc_file is None else _md5_of_output(dvc_file, Path(root) / raw)


def dataset_dvc_file(root: str | Path, raw: str | Path) -> Path | None:
    """The `.dvc` file with a recorded md5 for the directory `raw`: data.dvc, else `<raw>.dvc`; None if neither."""
    raw_dir = Path(root) / raw
    for dvc_file in (Path(root) / DATA_DVC_FILE, raw_dir.parent / f"{raw_dir.name}.dvc"):
        if _md5_of_output(dvc_file, raw_dir) is not None:
            return dvc_file
    return None


def _md5_of_output(dvc_file: Path, target: Path) -> str | None:
    """The md5 `dvc_file` records for the output at `target` (its paths are relative to its folder)."""
    if not dvc_file.is_file():
        return None
    parsed = yaml.safe_load(dvc_file.read_text()) or {}
    outs = parsed.get("outs") if isinstance(parsed, Mapping) else None
    # Compared as written, not resolved: a symlink must not make another folder's record count.
    wanted = os.path.normpath(os.path.abspath(target))
    for out in outs if isinstance(outs, list) else []:
        if isinstance(out, Mapping) and isinstance(out.get("path"), str) and "md5" in out:
            if os.path.normpath(os.path.abspath(dvc_file.parent / out["path"])) == wanted:
                return str(out["md5"]).removesuffix(".dir")
    return None


def dvc_file_md5(dvc_file: Mapping[str, Any] | None) -> str | None:
    """The md5 of a `.dvc` file's (single) output, from its parsed YAML (e.g. read at a git revision), or None."""
    outs = (dvc_file or {}).get("outs") or []
    if not outs or not isinstance(outs[0], Mapping) or "md5" not in outs[0]:
        return None
    return str(outs[0]["md5"]).removesuffix(".dir")


def short_md5(md5: Any, length: int = 8) -> str:
    """A dataset version as people read it: the md5's first `length` characters, "untracked" without one."""
    return str(md5)[:length] if md5 else "untracked"
