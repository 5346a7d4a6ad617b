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
    retrain.commit the dataset version and its results are committed to git
    (ganlib.versions.commit, the files `scenegan commit-version` commits).

What it reports comes from what happened: "published" or "kept" from
publish.json, and only when `dvc repro publish` really ran the stage (an
unchanged record means DVC skipped it; the gallery then already showed this
model or a better one), else "nothing to do".

Overlap: DVC holds its repository lock during each step; the Prefect flow
adds a concurrency limit of one so that two retrains never interleave.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ganlib.config import Params
from ganlib.data.dataset import open_prepared
from ganlib.errors import UserFacingError
from ganlib.io.dvc_cli import DvcError, dvc_executable, has_default_remote, run_dvc
from ganlib.io.logged_command import run_logged
from ganlib.io.provenance import DATA_DVC_FILE, dvc_tracked_md5
from ganlib.logs import Logger
from ganlib.metrics.report import METRICS_FILE, read_evaluation
from ganlib.versions.commit import commit_version, git, retrain_commit_message, version_files
from ganlib.versions.history import METRIC_COLUMNS, append_history_row, last_data_md5


class RetrainError(UserFacingError):
    """A retrain step failed; the workspace results were left as they were."""


# What a retrain did, in the words the summary and --json use.
NOTHING_TO_DO = "nothing to do"   # the dataset version was already retrained
PUBLISHED = "published"           # this retrain published a new release
KEPT = "kept"                     # the gallery was left as it was (the gate's reason, or already up to date)

# What the publish stage did in a retrain: the record's status, or this when
# `dvc repro publish` did not run it (its inputs had not changed).
PUBLISH_UP_TO_DATE = "up to date"


@dataclass(frozen=True)
class RetrainOutcome:
    outcome: str                           # NOTHING_TO_DO | PUBLISHED | KEPT
    data_md5: str | None
    previous_md5: str | None               # None: the first retrain of this project
    experiment: str | None = None
    fid: float | None = None
    fid_noise_low: float | None = None
    fid_noise_high: float | None = None
    published: str | None = None           # "published" | "skipped" | PUBLISH_UP_TO_DATE | None (nothing to do)
    reason: str | None = None              # why: the gate's words (publish.json), or why publish did not run
    release: str | None = None             # the release the gallery shows after this retrain
    gallery: str | None = None             # its index page
    comparison: dict[str, Any] | None = None  # publish.json's `comparison`: the gate's FIDs and noise bands
    committed: str | None = None           # the commit retrain.commit made
    to_commit: list[str] = field(default_factory=list)  # changed files that are not committed yet

    @property
    def status(self) -> str:
        """The older two-valued status ("nothing to do" | "retrained"), kept for callers that read it."""
        return NOTHING_TO_DO if self.outcome == NOTHING_TO_DO else "retrained"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


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


def run_experiment(params: Params, root: Path, name: str, log: Logger, set_params: Sequence[str] = (),
                   wait_for_lock: bool = False) -> None:
    """Reproduce up to `evaluate` as a DVC experiment in a temporary copy of the repo.

    `set_params` (`section.key=value`) are the experiment's changes to params.yaml (`-S`); with
    `wait_for_lock`, DVC waits for another experiment's hold on the repository lock instead of failing
    (several experiments started together, as a sweep does, each take it briefly to start and finish).
    """
    # Ignored paths the stages read but git does not carry: the extractor
    # weights and the cached reference statistics.
    copy_paths = [p for p in (params.base.paths.weights, params.base.paths.fid_cache) if (root / p).exists()]
    command = [*(["--wait-for-lock"] if wait_for_lock else []), "exp", "run", "--temp", "--name", name,
               *(f"--copy-paths={p}" for p in copy_paths), *(f"--set-param={p}" for p in set_params), "evaluate"]
    _stream_dvc(command, root, log)


def apply_and_publish(params: Params, root: Path, name: str, log: Logger) -> bool:
    """Apply the experiment and `dvc repro publish`; return whether the publish stage really ran.

    `dvc repro` skips a stage whose inputs have not changed (e.g. the first
    retrain of a dataset version that `dvc repro` already published): then
    publish.json is an earlier run's record and must not be reported as
    this retrain's.
    """
    log.info("applying experiment %s to the workspace", name)
    run_dvc(["exp", "apply", name], root)
    record_path = root / params.base.paths.publish_record
    before = record_path.read_bytes() if record_path.is_file() else None
    _stream_dvc(["repro", "publish"], root, log)
    # Every run writes a new record (its date at least): the same bytes mean the stage did not run.
    return record_path.is_file() and record_path.read_bytes() != before


def record_retrain(
    params: Params, root: Path, name: str, previous_md5: str | None, flow_run: str | None, now: datetime,
    publish_ran: bool,
) -> RetrainOutcome:
    """Append the dataset version -> metrics row; return what happened, read from the evaluate stage's
    metrics.json and evaluation.json, and publish.json."""
    metrics = read_evaluation(root / params.base.paths.evaluate)
    if metrics is None:
        raise RetrainError(f"{params.base.paths.evaluate}/{METRICS_FILE}: missing after the experiment's evaluate "
                           "stage; run `dvc repro evaluate` and look at its log")
    record_path = root / params.base.paths.publish_record
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    outcome, published, reason = publish_outcome(record, publish_ran)
    append_history_row(
        root / params.base.paths.history,
        {
            "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data_md5": metrics.get("data_md5"),
            "n_images": open_prepared(root / params.base.paths.prepared).count,
            "experiment": name,
            "commit": _git_head(root),
            **{key: metrics.get(key) for key in METRIC_COLUMNS},
            "published": published,
            "release": record.get("release"),
            "flow_run": flow_run,
        },
    )
    return RetrainOutcome(
        outcome, metrics.get("data_md5"), previous_md5, name, metrics.get("fid"),
        metrics.get("fid_noise_low"), metrics.get("fid_noise_high"), published, reason,
        record.get("release"), record.get("index"), record.get("comparison") if publish_ran else None,
        to_commit=uncommitted_version_files(params, root),
    )


def publish_outcome(record: Mapping[str, Any], publish_ran: bool) -> tuple[str, str, str]:
    """(outcome, what the publish stage did, why), from publish.json and whether the stage ran."""
    if publish_ran and record.get("status") == "published":
        return PUBLISHED, "published", str(record.get("reason") or "")
    if publish_ran:
        return KEPT, str(record.get("status") or "skipped"), str(record.get("reason") or "")
    when = f" on {record['date']}" if record.get("date") else ""
    if record.get("status") == "published":
        why = f"this model was already published{when} as release {record.get('release')}"
    else:
        why = (f"the publish stage already kept release {record.get('release')} for this model{when}: "
               f"{record.get('reason')}")
    return KEPT, PUBLISH_UP_TO_DATE, f"{why} (`dvc repro` found the publish stage's inputs unchanged)"


def commit_results(params: Params, root: Path, data_md5: str | None, name: str) -> str | None:
    """git-commit the dataset version with this retrain's results (retrain.commit); the new commit, if any."""
    return commit_version(params, root, retrain_commit_message(data_md5, name)).commit


def uncommitted_version_files(params: Params, root: Path) -> list[str]:
    """The dataset-version files (ganlib.versions.commit) that differ from HEAD or are not in git yet."""
    candidates = version_files(params, root)
    if not candidates:
        return []
    listed = git(root, "status", "--porcelain", "--untracked-files=all", "--", *candidates)
    return [line[3:] for line in listed.splitlines()]


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
