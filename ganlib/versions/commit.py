"""`scenegan commit-version`: commit a dataset version together with the results it produced.

A dataset version is only reproducible from git when the commit that records
it (data.dvc) also records what the pipeline made of it: dvc.lock (the md5 of
every stage's inputs and outputs), the evaluate stage's metrics (metrics.json
and the scores folder DVC reads), provenance, params, memorisation and
truncation records, the publish record, the retrain history and the
.gitignore files DVC writes. Committing them one by one invites a commit
whose data.dvc and dvc.lock disagree, so this commits them together, and only
when `dvc status` is clean: otherwise dvc.lock would describe results the
workspace does not hold.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ganlib.config import Params
from ganlib.errors import UserFacingError
from ganlib.io.dvc_cli import run_dvc
from ganlib.io.provenance import DATA_DVC_FILE, dataset_dvc_file, dvc_tracked_md5, short_md5
from ganlib.metrics.dvc_scores import SCORES_DIR
from ganlib.metrics.report import MEMORISATION_FILE, METRICS_FILE, PROVENANCE_FILE, TRUNCATION_FILE

DVC_LOCK_FILE = "dvc.lock"
EVALUATE_PARAMS_FILE = "params.json"  # dvc.yaml: the evaluate stage's uncached params record
MAX_PATHS_SHOWN = 3  # changed paths listed per stage in a refusal (`dvc status` lists them all)


class NotReproducedError(UserFacingError):
    """`dvc status` reports changes: dvc.lock does not describe the workspace yet."""


class GitError(UserFacingError):
    """A git command failed; the message carries its output."""


@dataclass(frozen=True)
class VersionCommit:
    commit: str | None          # the new commit (short hash); None: nothing had changed
    message: str
    data_md5: str | None        # the dataset version committed
    dvc_file: str | None        # the .dvc file that records it
    files: list[str]            # the files this commit changed
    candidates: list[str]       # every file commit-version looks at (present ones)
    still_modified: list[str]   # other tracked files with uncommitted changes, left alone


def version_files(params: Params, root: Path) -> list[str]:
    """The files that make up a dataset version and its results, relative to root, those that exist.

    The evaluate stage's scores folder (DVC's metrics, a file per metric) is one entry, the folder: git then
    adds the files in it and removes those an earlier evaluation wrote and this one did not.
    """
    dvc_file = dataset_dvc_file(root, params.base.paths.raw) or root / DATA_DVC_FILE
    evaluate = params.base.paths.evaluate
    paths = [
        _relative(dvc_file, root), DVC_LOCK_FILE,
        *(f"{evaluate}/{name}"
          for name in (METRICS_FILE, PROVENANCE_FILE, EVALUATE_PARAMS_FILE, MEMORISATION_FILE, TRUNCATION_FILE)),
        params.base.paths.publish_record, params.base.paths.history, *dvc_gitignores(params, root),
    ]
    files = [path for path in dict.fromkeys(paths) if (root / path).is_file()]
    scores = f"{evaluate}/{SCORES_DIR}"
    return files + ([scores] if (root / scores).is_dir() else [])


def dvc_gitignores(params: Params, root: Path) -> list[str]:
    """The .gitignore files DVC keeps beside the dataset and the stage outputs (e.g. data/.gitignore: /prepared).

    Left out of the commit, a clone would see data/prepared as files to add
    to git. Those inside a folder git ignores anyway (runs/) are skipped.
    """
    found = []
    paths = params.base.paths
    for folder in (paths.raw, paths.prepared, paths.train, paths.live, paths.model):
        path = (Path(folder).parent / ".gitignore").as_posix()
        if path in found:
            continue
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
        if (root / path).is_file() and not ignored:
            found.append(path)
    return found


def check_reproduced(root: Path) -> None:
    """Refuse unless `dvc status` is clean: every stage and .dvc file matches dvc.lock / its record."""
    changes = run_dvc(["status", "--json"], root).stdout.strip()
    status = json.loads(changes or "{}")
    if status:
        listing = "\n".join(f"  {line}" for line in status_lines(status))
        raise NotReproducedError(
            f"`dvc status` reports changes, so dvc.lock does not describe the workspace yet:\n{listing}\n"
            "Run `dvc repro` (after `dvc add` for changed data), then `scenegan commit-version` again."
        )


def status_lines(status: Mapping[str, Any]) -> list[str]:
    """`dvc status --json` as one line per stage or .dvc file: what changed."""
    lines = []
    for name, entries in status.items():
        parts = []
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, Mapping):
                parts += [f"{kind}: {_changed_paths(paths)}" for kind, paths in entry.items()]
            else:
                parts.append(str(entry))
        lines.append(f"{name}: {'; '.join(parts)}")
    return lines


def _changed_paths(paths: Any) -> str:
    """{"data/raw": "modified", ...} as "data/raw modified, ... and 25 more" (a stage has dozens of code deps)."""
    if not isinstance(paths, Mapping):
        return str(paths)
    shown = [f"{path} {state}" for path, state in list(paths.items())[:MAX_PATHS_SHOWN]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def commit_version(params: Params, root: Path, message: str) -> VersionCommit:
    """Check `dvc status`, then git-commit exactly version_files() with `message`."""
    check_reproduced(root)
    candidates = version_files(params, root)
    dvc_file = next((path for path in candidates if path.endswith(".dvc")), None)
    data_md5 = dvc_tracked_md5(root / dvc_file) if dvc_file else None
    git(root, "add", "--", *candidates)
    changed = git(root, "diff", "--cached", "--name-only", "--", *candidates).split()
    commit = None
    if changed:
        # With paths, `git commit` commits only those: whatever else the user staged stays staged.
        git(root, "commit", "-q", "-m", message, "--", *candidates)
        commit = git(root, "rev-parse", "--short", "HEAD").strip()
    still = [line[3:] for line in git(root, "status", "--porcelain", "--untracked-files=no").splitlines()]
    return VersionCommit(commit, message, data_md5, dvc_file, changed, candidates, still)


def retrain_commit_message(data_md5: str | None, experiment: str) -> str:
    """The message retrain.commit uses, and the one the retrain summary suggests."""
    return f"dataset {short_md5(data_md5)}: retrained as {experiment}"


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True)
    if result.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _relative(path: Path, root: Path) -> str:
    return str(Path(path).resolve().relative_to(Path(root).resolve()))
