"""Dataset versions as revisions: resolve them, read what each one recorded.

A version is a git commit, branch or tag, a DVC experiment, or the
workspace. For each we read, through DVC's own filesystem (dvc.api), the
files that describe it at that revision: params.yaml, data.dvc (the dataset
md5), the evaluate stage's metrics.json and evaluation.json (committed to
git) and the prepared dataset's manifest.json (a DVC output, read from the
local DVC cache).
Experiment names are resolved with `dvc exp show --json`, never by parsing
text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from dvc.api import DVCFileSystem
from dvc.exceptions import DvcException
from dvc_data.index.index import DataIndexError

from ganlib.config import Paths
from ganlib.data.dataset import IMAGES_FILE, LABELS_FILE, MANIFEST_FILE
from ganlib.errors import UserFacingError
from ganlib.io.dvc_cli import run_dvc_json
from ganlib.io.provenance import DATA_DVC_FILE, dvc_file_md5, short_md5
from ganlib.logs import Logger
from ganlib.metrics.report import METRICS_FILE, PROVENANCE_FILE, evaluation_record

WORKSPACE = "workspace"
PARAMS_FILE = "params.yaml"
# Each stage records the params it ran with beside its outputs (ganlib.config.write_resolved_params).
PARAMS_RECORD_FILE = "params.json"
RECORDING_STAGES = ("prepared", "train", "evaluate")

# What reading a path at a revision raises when it is absent, or DVC-tracked
# but not in the cache (a missing directory listing is not an OSError).
DVC_READ_ERRORS = (OSError, UnicodeDecodeError, DvcException, DataIndexError)

# When two revisions record the same thing, the label kept is the most
# meaningful one: a tag was named on purpose, a bare commit was not.
KIND_PREFERENCE = ("tag", "branch", "experiment", "commit", "workspace")
MAX_SUBJECT = 40  # characters of a commit message's subject kept in a label


class RevisionError(UserFacingError):
    """A revision that does not exist, or a directory that is not a git repository."""


@dataclass(frozen=True)
class Revision:
    label: str            # what the user named it (or the default chooser did)
    kind: str             # one of KIND_PREFERENCE
    sha: str | None       # full commit sha; for the workspace, HEAD's (None before the first commit)
    timestamp: int | None # committer time (seconds since epoch); None for the workspace


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PreparedInfo:
    """The prepared dataset's manifest at a revision."""

    path: str             # repository-relative directory (that revision's base.paths.prepared)
    count: int
    resolution: int
    data_md5: str | None
    images_sha256: str

    def __post_init__(self) -> None:
        # The digest names a scratch directory when versions are compared, and
        # it comes from another revision's file: anything but a sha256 is refused.
        if not SHA256_HEX.fullmatch(self.images_sha256):
            raise ValueError(f"images_sha256 is not 64 hexadecimal characters: {self.images_sha256[:80]!r}")


@dataclass(frozen=True)
class VersionFacts:
    """What one revision records about its dataset, params and metrics. Missing pieces are None."""

    revision: Revision
    params: dict[str, Any] | None
    data_md5: str | None          # from data.dvc
    prepared: PreparedInfo | None # None when missing, not in the cache, or prepared from other data
    metrics: dict[str, Any] | None  # None when missing or computed on other data
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The params.json records the stages wrote (prepared, train, evaluate), merged: the keys a run used.
    # None when the revision has none (older commits, outputs not in the local DVC cache).
    used_params: dict[str, Any] | None = None


# --------------------------------------------------------------------------- resolving


def resolve_revisions(repo: Path, revs: Sequence[str]) -> list[Revision]:
    """Each named rev as a Revision, in the order given. Unknown names raise RevisionError."""
    require_dvc_repository(repo)
    experiments: dict[str, list[str]] | None = None
    resolved = []
    for rev in revs:
        if rev == WORKSPACE:
            resolved.append(workspace_revision(repo))
            continue
        sha = git_commit_sha(repo, rev)
        if sha is not None:
            resolved.append(Revision(rev, _git_kind(repo, rev), sha, commit_timestamp(repo, sha)))
            continue
        # Experiment names are not git refs that rev-parse searches; ask DVC (once).
        experiments = experiments if experiments is not None else experiment_shas(repo)
        resolved.append(_experiment_revision(repo, rev, experiments.get(rev, [])))
    return resolved


def default_revisions(repo: Path, log: Logger, version_files: Sequence[str] = (DATA_DVC_FILE,)) -> list[Revision]:
    """Every dataset version we can find, oldest first, the workspace last.

    That is: the commits in HEAD's history that changed any of
    `version_files` (the dataset's .dvc file, and the evaluate stage's
    metrics.json: a version's results are often committed after its data),
    every tag, every DVC experiment, HEAD itself and the workspace.
    Duplicates (the same dataset, params and metrics under several names) are
    removed later, once their contents are known (`deduplicate_versions`).
    """
    require_dvc_repository(repo)
    candidates: dict[str, Revision] = {}

    def add(revision: Revision) -> None:
        # One commit, several names: keep the preferred kind (a tag over a bare sha).
        known = candidates.get(revision.sha)
        if known is None or KIND_PREFERENCE.index(revision.kind) < KIND_PREFERENCE.index(known.kind):
            candidates[revision.sha] = revision

    head = git_commit_sha(repo, "HEAD")
    if head is not None:
        for line in _git_lines(repo, "log", "--format=%H %s", "HEAD", "--", *version_files):
            sha, _, subject = line.partition(" ")
            add(Revision(commit_label(sha, subject), "commit", sha, commit_timestamp(repo, sha)))
        for tag in _git_lines(repo, "tag", "--list"):
            sha = git_commit_sha(repo, f"refs/tags/{tag}")
            if sha is not None:
                add(Revision(tag, "tag", sha, commit_timestamp(repo, sha)))
        branch = _git_lines(repo, "branch", "--show-current")
        add(Revision(branch[0] if branch else "HEAD", "branch" if branch else "commit", head, commit_timestamp(repo, head)))
        for name, shas in experiment_shas(repo).items():
            for sha in shas:
                add(Revision(name, "experiment", sha, commit_timestamp(repo, sha)))
    ordered = sorted(candidates.values(), key=lambda r: (r.timestamp or 0, _ancestor_count(repo, r.sha)))
    log.info(f"comparing {len(ordered)} revision(s) and the workspace (duplicates are dropped once read)")
    return [*ordered, workspace_revision(repo)]


def commit_label(sha: str, subject: str) -> str:
    """A bare commit as people know it: "1a2b3c4d dataset v2" (its short sha, then its message's subject)."""
    subject = " ".join(subject.split())
    if len(subject) > MAX_SUBJECT:
        subject = subject[: MAX_SUBJECT - 1] + "…"
    return f"{sha[:8]} {subject}".rstrip()


def workspace_revision(repo: Path) -> Revision:
    return Revision(WORKSPACE, "workspace", git_commit_sha(repo, "HEAD"), None)


def experiment_shas(repo: Path) -> dict[str, list[str]]:
    """Finished DVC experiments by name -> their commit shas (all baselines)."""
    baselines = run_dvc_json(["exp", "show", "--all-commits", "--hide-queued", "--hide-failed", "--hide-workspace"], repo) or []
    found: dict[str, list[str]] = {}
    for baseline in baselines:
        for experiment in baseline.get("experiments") or []:
            # A queued, running or failed experiment has an executor and no results.
            if experiment.get("executor") is not None:
                continue
            for entry in experiment.get("revs") or []:
                name, sha = entry.get("name") or experiment.get("name"), entry.get("rev")
                if name and sha and sha not in found.get(name, []):
                    found.setdefault(name, []).append(sha)
    return found


def require_dvc_repository(repo: Path) -> None:
    """RevisionError unless `repo` is the root of a git + DVC repository."""
    result = _git(repo, "rev-parse", "--is-inside-work-tree")
    if result.returncode != 0 or result.stdout.strip() != "true":
        raise RevisionError(f"{repo}: not a git repository (compare reads dataset versions from git and DVC history)")
    if not (Path(repo) / ".dvc").is_dir():
        raise RevisionError(f"{repo}: not the root of a DVC repository (no .dvc/ here); pass the project's root directory")


def git_commit_sha(repo: Path, rev: str) -> str | None:
    if rev.startswith("-"):
        return None  # never let a name be read as a git option
    result = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def commit_timestamp(repo: Path, sha: str) -> int | None:
    lines = _git_lines(repo, "show", "-s", "--format=%ct", sha)
    return int(lines[0]) if lines else None


def _experiment_revision(repo: Path, rev: str, shas: list[str]) -> Revision:
    if not shas:
        raise RevisionError(
            f"{rev!r} is not a revision of {repo}: not a git commit, branch or tag, nor a DVC experiment name "
            "(list them with `git tag`, `git branch -a` and `dvc exp list --all-commits`)"
        )
    if len(shas) > 1:
        raise RevisionError(
            f"{rev!r} names {len(shas)} DVC experiments ({', '.join(s[:8] for s in shas)}); "
            "pass one of these commit shas instead"
        )
    return Revision(rev, "experiment", shas[0], commit_timestamp(repo, shas[0]))


def _git_kind(repo: Path, rev: str) -> str:
    if rev.startswith("refs/exps/"):
        return "experiment"
    for prefix, kind in (("refs/tags/", "tag"), ("refs/heads/", "branch")):
        name = rev.removeprefix(prefix)
        if _git(repo, "show-ref", "--verify", "--quiet", f"{prefix}{name}").returncode == 0:
            return kind
    return "commit"


def _ancestor_count(repo: Path, sha: str | None) -> int:
    lines = _git_lines(repo, "rev-list", "--count", sha) if sha else []
    return int(lines[0]) if lines else 0


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], text=True, capture_output=True)


def _git_lines(repo: Path, *args: str) -> list[str]:
    result = _git(repo, *args)
    return [line for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


# --------------------------------------------------------------------------- reading


def read_version(repo: Path, revision: Revision, fallback_paths: Paths) -> VersionFacts:
    """params, dataset md5, prepared manifest and metrics recorded at `revision`.

    Paths come from that revision's own params.yaml (they may have moved),
    else from `fallback_paths`. A prepared dataset or metrics.json made from
    another dataset than the revision's data.dvc names (committed without
    re-running the pipeline) is stale: it is dropped with a note, since
    reporting it would pin one dataset's numbers on another. Nothing here
    raises for a revision that merely lacks a file.
    """
    notes: list[str] = []
    fs = _filesystem(repo, revision)
    try:
        params = _read_yaml(fs, PARAMS_FILE)
        if params is None:
            notes.append(f"no readable {PARAMS_FILE} at this revision")
        paths = _paths_at(params, fallback_paths)
        data_md5 = dvc_file_md5(_read_yaml(fs, DATA_DVC_FILE))
        if data_md5 is None:
            notes.append(f"no dataset version ({DATA_DVC_FILE} missing or without an md5)")
        metrics_path = f"{paths['evaluate']}/{METRICS_FILE}"
        metrics = _read_json(fs, metrics_path)
        # The provenance beside it (dataset md5, extractor); revisions from before it hold both in metrics.json.
        provenance = _read_json(fs, f"{paths['evaluate']}/{PROVENANCE_FILE}") if metrics is not None else None
        prepared, why_not = _read_prepared(fs, paths["prepared"])
        used_params = _read_params_records(fs, paths)
    finally:
        fs.close()

    if why_not:
        notes.append(why_not)
    if prepared is not None and data_md5 and prepared.data_md5 != data_md5:
        notes.append(f"{prepared.path} was prepared from dataset {short_md5(prepared.data_md5)}, not {short_md5(data_md5)} "
                     "(stale: `dvc repro` at this revision updates it)")
        prepared = None
    if metrics is not None:
        # One mapping, old key names mapped (files from before the FID band's rename, fid_ci_*).
        metrics = evaluation_record(metrics, provenance)
    if metrics is None:
        notes.append(f"no metrics: {metrics_path} missing or unreadable at this revision (evaluate has not run here)")
    elif data_md5 and "data_md5" not in metrics:
        notes.append(f"no metrics: {metrics_path} at this revision has no {PROVENANCE_FILE} beside it to say which "
                     f"dataset it was computed on (commit both: `scenegan commit-version`)")
        metrics = None
    elif data_md5 and metrics.get("data_md5") != data_md5:
        notes.append(
            f"no metrics: {metrics_path} was computed on dataset {short_md5(metrics.get('data_md5'))}, "
            f"not this revision's {short_md5(data_md5)} (stale: run `dvc repro` and commit)"
        )
        metrics = None
    return VersionFacts(revision, params, data_md5, prepared, metrics, tuple(notes), used_params)


def materialize_prepared(repo: Path, revision: Revision, prepared: PreparedInfo, destination: Path) -> Path:
    """The revision's prepared dataset as a local directory that ganlib.data.dataset can open.

    The workspace's own directory is used in place; any other revision's
    images.npy, manifest.json and (for a labelled dataset) labels.npy are
    copied out of the DVC cache (or its remote) into `destination`. Raises
    one of DVC_READ_ERRORS when the data is in neither.
    """
    if revision.kind == "workspace":
        local = Path(repo) / prepared.path
        if (local / IMAGES_FILE).is_file() and (local / MANIFEST_FILE).is_file():
            return local
    destination.mkdir(parents=True, exist_ok=True)
    fs = _filesystem(repo, revision)
    try:
        for name in (MANIFEST_FILE, IMAGES_FILE):
            fs.get_file(f"{prepared.path}/{name}", str(destination / name))
        # A labelled dataset's manifest names classes, and opening it without its labels is refused.
        if fs.exists(f"{prepared.path}/{LABELS_FILE}"):
            fs.get_file(f"{prepared.path}/{LABELS_FILE}", str(destination / LABELS_FILE))
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    finally:
        fs.close()
    return destination


def _filesystem(repo: Path, revision: Revision) -> DVCFileSystem:
    rev = None if revision.kind == "workspace" else revision.sha
    return DVCFileSystem(str(repo), rev=rev)


def _read_text(fs: DVCFileSystem, path: str) -> str | None:
    try:
        return fs.read_text(path)
    except DVC_READ_ERRORS:
        return None


def _read_yaml(fs: DVCFileSystem, path: str) -> dict[str, Any] | None:
    text = _read_text(fs, path)
    try:
        data = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _read_json(fs: DVCFileSystem, path: str) -> dict[str, Any] | None:
    text = _read_text(fs, path)
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _paths_at(params: dict[str, Any] | None, fallback: Paths) -> dict[str, str]:
    recorded = ((params or {}).get("base") or {}).get("paths") or {}
    return {key: str(recorded.get(key) or getattr(fallback, key)) for key in RECORDING_STAGES}


def _read_params_records(fs: DVCFileSystem, paths: dict[str, str]) -> dict[str, Any] | None:
    """The stages' params.json records at this revision, merged (nested, as written); None without any.

    Their "run" entry (what a stage found as it ran, e.g. code digests) is not a parameter and is dropped.
    Stages record overlapping keys (base.paths.*) with the same values, so the merge order does not matter.
    """
    merged: dict[str, Any] = {}
    for stage in RECORDING_STAGES:
        record = _read_json(fs, f"{paths[stage]}/{PARAMS_RECORD_FILE}")
        if record is not None:
            record.pop("run", None)
            _merge_into(merged, record)
    return merged or None


def _merge_into(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def _produced(fs: DVCFileSystem, path: str) -> bool:
    """Whether the revision records an output at `path` with a hash (dvc.lock), cached or not."""
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return False
    except DVC_READ_ERRORS:
        return True  # recorded, but its listing could not be loaded
    # A stage output declared in dvc.yaml but never run shows as an empty file without a hash.
    return info.get("type") == "directory" or bool(info.get("md5"))


def error_summary(exc: BaseException) -> str:
    """The first line of an exception's message (DVC's can run to many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_prepared(fs: DVCFileSystem, path: str) -> tuple[PreparedInfo | None, str | None]:
    """The manifest, or (None, why not)."""
    manifest_path = f"{path}/{MANIFEST_FILE}"
    try:
        text = fs.read_text(manifest_path)
    except DVC_READ_ERRORS as exc:
        if not _produced(fs, path):
            return None, f"no prepared dataset ({path}) at this revision"
        return None, (f"prepared dataset ({path}) not in the local DVC cache nor on a DVC remote: `dvc fetch` it "
                      f"where it was pushed, or re-run `dvc repro preprocess` at this revision ({error_summary(exc)})")
    try:
        manifest = json.loads(text)
        return PreparedInfo(
            path=path,
            count=int(manifest["count"]),
            resolution=int(manifest["resolution"]),
            data_md5=manifest.get("data_md5"),
            images_sha256=str(manifest["images_sha256"]),
        ), None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return None, f"{path}/{MANIFEST_FILE} at this revision is not a prepared-dataset manifest ({error_summary(exc)})"
