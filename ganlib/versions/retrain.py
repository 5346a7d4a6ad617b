"""Retraining when the dataset version changes, recorded as DVC experiments.

One retrain, in order:
 1. refresh the dataset version: `dvc update data.dvc` where data.dvc is an
    import, else `dvc pull data.dvc` where a default remote is configured;
 2. compare the md5 in data.dvc with the last successful retrain's (the
    history CSV): unchanged means nothing to do;
 3. `dvc exp run --temp` up to the evaluate stage, so the run happens in a
    scratch copy: a failure leaves the workspace (model, metrics, gallery)
    exactly as it was. The experiment is named <prefix>-<md5>-<UTC time>, so
    `dvc exp show` and `dvc metrics diff` list every retrain;
 4. `dvc exp apply` brings the new results into the workspace and
    `dvc repro publish` publishes them (gated by publish.gate);
 5. a row dataset version -> metrics is appended to the history, and with
    retrain.commit the results are committed to git.

Overlap: DVC holds its repository lock during each step; the Prefect flow
adds a concurrency limit of one so that two retrains never interleave.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ganlib.config import Params
from ganlib.data.dataset import open_prepared
from ganlib.errors import UserFacingError
from ganlib.io.dvc_cli import DvcError, dvc_executable, has_default_remote, run_dvc
from ganlib.io.logged_command import run_logged
from ganlib.io.provenance import DATA_DVC_FILE, dvc_tracked_md5
from ganlib.logs import Logger
from ganlib.metrics.report import METRICS_FILE
from ganlib.versions.history import METRIC_COLUMNS, append_history_row, last_data_md5


class RetrainError(UserFacingError):
    """A retrain step failed; the workspace results were left as they were."""


@dataclass(frozen=True)
class RetrainOutcome:
    status: str  # "nothing to do" | "retrained"
    data_md5: str | None
    previous_md5: str | None
    experiment: str | None = None
    fid: float | None = None
    published: str | None = None


def refresh_dataset_version(root: Path, log: Logger) -> str | None:
    """Bring data.dvc (and data/raw) up to date from its source; return its md5."""
    dvc_file = root / DATA_DVC_FILE
    if not dvc_file.is_file():
        raise RetrainError(f"{dvc_file}: not found; track the dataset first: `dvc add data/raw` (see README)")
    if _is_import(dvc_file):
        log.info("data.dvc is a DVC import: `dvc update data.dvc`")
        run_dvc(["update", DATA_DVC_FILE], root)
    elif has_default_remote(root):
        log.info("pulling the dataset version recorded in data.dvc from the DVC remote")
        run_dvc(["pull", DATA_DVC_FILE], root)
    _warn_if_workspace_differs(root, log)
    return dvc_tracked_md5(dvc_file)


def needs_retrain(params: Params, root: Path, data_md5: str | None) -> tuple[bool, str | None]:
    """(whether the dataset version differs from the last successful retrain's, that version)."""
    previous = last_data_md5(root / params.base.paths.history)
    return data_md5 != previous, previous


def experiment_name(params: Params, data_md5: str | None, now: datetime) -> str:
    return f"{params.retrain.experiment_prefix}-{(data_md5 or 'untracked')[:8]}-{now:%Y%m%dT%H%M%SZ}"


def run_experiment(params: Params, root: Path, name: str, log: Logger) -> None:
    """Reproduce up to `evaluate` as a DVC experiment in a temporary copy of the repo."""
    # Ignored paths the stages read but git does not carry: the extractor
    # weights and the cached reference statistics.
    copy_paths = [p for p in (params.base.paths.weights, params.base.paths.fid_cache) if (root / p).exists()]
    command = ["exp", "run", "--temp", "--name", name, *(f"--copy-paths={p}" for p in copy_paths), "evaluate"]
    _stream_dvc(command, root, log)


def apply_and_publish(root: Path, name: str, log: Logger) -> None:
    log.info("applying experiment %s to the workspace", name)
    run_dvc(["exp", "apply", name], root)
    _stream_dvc(["repro", "publish"], root, log)


def record_retrain(
    params: Params, root: Path, name: str, previous_md5: str | None, flow_run: str | None, now: datetime
) -> RetrainOutcome:
    """Append the dataset version -> metrics row; return what happened."""
    metrics = json.loads((root / params.base.paths.evaluate / METRICS_FILE).read_text())
    record_path = root / params.base.paths.publish_record
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    append_history_row(
        root / params.base.paths.history,
        {
            "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data_md5": metrics.get("data_md5"),
            "n_images": open_prepared(root / params.base.paths.prepared).count,
            "experiment": name,
            "commit": _git_head(root),
            **{key: metrics.get(key) for key in METRIC_COLUMNS},
            "published": record.get("status"),
            "release": record.get("release"),
            "flow_run": flow_run,
        },
    )
    return RetrainOutcome(
        "retrained", metrics.get("data_md5"), previous_md5, name, metrics.get("fid"), record.get("status")
    )


def commit_results(params: Params, root: Path, name: str) -> None:
    """git-commit the files that describe this retrain (retrain.commit)."""
    paths = [
        DATA_DVC_FILE, "dvc.lock", params.base.paths.history, params.base.paths.publish_record,
        f"{params.base.paths.evaluate}/{METRICS_FILE}", f"{params.base.paths.evaluate}/params.json",
    ]
    existing = [p for p in paths if (root / p).exists()]
    _git(root, "add", "--", *existing)
    _git(root, "commit", "-m", f"retrain {name}", "--", *existing)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _is_import(dvc_file: Path) -> bool:
    data = yaml.safe_load(dvc_file.read_text()) or {}
    return any("repo" in dep for dep in data.get("deps") or [])


def _warn_if_workspace_differs(root: Path, log: Logger) -> None:
    result = run_dvc(["status", DATA_DVC_FILE, "--json"], root, check=False)
    if result.returncode == 0 and json.loads(result.stdout or "{}"):
        log.warning(
            "data/raw differs from what data.dvc records; the retrain uses data.dvc's version. "
            "To make your changes a new dataset version: `dvc add data/raw` (and commit data.dvc)"
        )


def _stream_dvc(args: list[str], root: Path, log: Logger) -> None:
    """Run a long DVC command, forwarding its output to the log."""
    log.info("dvc %s", " ".join(args))
    status, tail = run_logged([dvc_executable(), *args], root, log)
    if status != 0:
        raise DvcError(f"`dvc {' '.join(args)}` failed (exit {status}); last lines:\n" + "\n".join(tail))


def _git_head(root: Path) -> str | None:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True, capture_output=True)
    return result.stdout.strip() or None


def _git(root: Path, *args: str) -> None:
    result = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True)
    if result.returncode != 0:
        raise RetrainError(f"`git {' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
