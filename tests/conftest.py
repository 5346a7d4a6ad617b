"""Shared fixtures: the repo's params, a real Prefect test server, a temporary DVC repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a stage needs to run inside a scratch copy of the project.
PROJECT_FILES = ("ganlib", "tasks", "flows", "dvc.yaml", "params.yaml", "presets.yaml", ".dvcignore")
DVC = str(Path(sys.executable).with_name("dvc"))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# pytest-xdist workers (`make test`) share the machine's cores: each worker, and the stages and servers it
# starts, gets its share as torch's thread count, unless the caller set OMP_NUM_THREADS. torch's default, a
# thread per core, in two workers at once puts four spinning threads on 2 cores (the oversubscription the
# training log warns of): under -n 2 on 2 busy cores the speed-cache test of test_dvc_train_code.py (two tiny
# trainings) took 189 s, 46 s with one thread each. Set here, before any test module imports torch; xdist
# names the worker count before conftest loads.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _CORES // _XDIST_WORKERS)))


@pytest.fixture(scope="session")
def session_machine_cache(tmp_path_factory) -> Path:
    """The session's per-machine cache directory (a module may override machine_cache; this stays)."""
    return tmp_path_factory.mktemp("machine-cache")


@pytest.fixture(scope="session", autouse=True)
def machine_cache(session_machine_cache: Path) -> Iterator[Path]:
    """Speed-probe choices go to a session directory, not the user's cache (child processes inherit it)."""
    path = session_machine_cache
    previous = os.environ.get("SCENEGAN_CACHE_DIR")
    os.environ["SCENEGAN_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SCENEGAN_CACHE_DIR", None)
    else:
        os.environ["SCENEGAN_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def load_test_params(overrides: Sequence[str] = ()):
    """The project's params.yaml with overrides applied (tests shrink sizes this way)."""
    from ganlib.config import load_params

    return load_params(REPO_ROOT / "params.yaml", overrides)


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """One real Prefect server (temporary SQLite database) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def stage_env(api_url: str) -> dict[str, str]:
    """Environment for child processes (dvc repro, the CLI) that report to the Prefect server at `api_url`."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def subprocess_env(prefect_api_url: str) -> dict[str, str]:
    """Environment for child processes (dvc repro, the CLI) that report to the test server."""
    return stage_env(prefect_api_url)


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, env=env, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def stop_process(process: subprocess.Popen, grace_s: float = 30) -> None:
    """Terminate a server started by a test; kill it if it does not stop in time."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def project_template(tmp_path_factory) -> Path:
    """The scratch git + DVC repository of project_copy, made once per session (per xdist worker):
    `git init` and `dvc init` are processes of their own, a few seconds a test on a busy machine."""
    root = tmp_path_factory.mktemp("project-template") / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, root / name)
    return init_git_dvc_repo(root)


@pytest.fixture
def project_copy(project_template: Path, tmp_path: Path) -> Path:
    """A scratch git + DVC repository holding a copy of the project's code and params."""
    return copy_project(project_template, tmp_path / "project")


def copy_project(source: Path, target: Path) -> Path:
    """A copy of the scratch project `source` at `target` that shares no file with it.

    Every file comes along (git, DVC's cache, ignored outputs and checkpoints), so a test may change or
    delete anything in its copy without touching `source` or another test's copy. Links stay links
    (symlinks=True) and must lead inside the copy: one into `source` (a DVC cache of type symlink, say)
    would let a test change what every later copy starts from. DVC's scratch folder (.dvc/tmp: its
    locks, the experiments' queue) is left out; DVC makes it again.
    """
    def scratch(folder: str, names: list[str]) -> set[str]:
        return {"tmp"} if Path(folder) == source / ".dvc" else set()

    shutil.copytree(source, target, symlinks=True, ignore=scratch)
    inside = target.resolve()
    for folder, dirs, files in os.walk(target):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink() and not (path.parent / os.readlink(path)).resolve().is_relative_to(inside):
                raise AssertionError(f"{path} links to {os.readlink(path)}, outside the copy {target}: a test "
                                     f"would change {source} through it; copy the file instead of linking it")
    return target


def init_git_dvc_repo(root: Path) -> Path:
    """`root` (created if missing) as a git repository with a committer and DVC initialised, analytics off."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "scenegan tests"], root)
    run([DVC, "init", "-q"], root)
    run([DVC, "config", "core.analytics", "false"], root)
    return root


def set_params(params_file: Path, overrides: Sequence[str]) -> None:
    """Rewrite a params.yaml with overrides applied (validated), as a user would edit it."""
    import yaml

    from ganlib.config import apply_overrides, validate_params

    raw = apply_overrides(yaml.safe_load(params_file.read_text()), overrides)
    validate_params(raw, source=str(params_file))
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))


# Small enough that a whole pipeline runs in well under a minute on 2 cores.
TINY_DATA = ["data.n_images=48", "data.size=32", "preprocess.resolution=32", "preprocess.min_side=32", "preprocess.workers=1"]


def add_default_dataset(root: Path) -> None:
    """Generate the (tiny) default dataset in a project copy and record it in data.dvc."""
    from ganlib.config import load_params
    from ganlib.data.raw_data import ensure_raw_data
    from ganlib.logs import plain_logger

    ensure_raw_data(load_params(root / "params.yaml"), root, plain_logger("tests"))


# A whole pipeline in well under a minute: tiny data, a few hundred images of
# training, the small registered extractor instead of Inception.
TINY_PIPELINE = TINY_DATA + [
    "train.kimg=0.25",
    "train.tick_kimg=0.125",
    "train.g_width=8",
    "train.d_width=8",
    "train.batch_size=32",
    "train.microbatch=32",
    "evaluate.extractor=tiny-random-conv",
    "evaluate.n_samples=32",
    "evaluate.kid_subset_size=16",
    "evaluate.during_training.every_kimg=0",
    "publish.n_samples=4",
    "publish.grid_size=4",
    "publish.walk_frames_per_keyframe=2",   # a 4-keyframe walk of 8 frames: the gallery's video, made cheaply
]


def make_tiny_project(root: Path) -> Path:
    """`root` (a project_copy) with tiny params and its (tiny) default dataset version, committed."""
    set_params(root / "params.yaml", TINY_PIPELINE)
    add_default_dataset(root)
    from ganlib.metrics.weight_files import FID_INCEPTION_FILE

    # The train stage depends on the FID Inception file, so DVC wants it to exist. The tiny extractor
    # reads no weights; anything that did would refuse these bytes (their sha1 is checked).
    (root / "weights").mkdir()
    (root / "weights" / FID_INCEPTION_FILE).write_bytes(b"placeholder: not the FID Inception weights\n")
    ignored = ("/weights/", "/cache/", "/runs/", "/results/gallery/", "/results/model/", "/reports/")
    (root / ".gitignore").write_text("".join(f"{path}\n" for path in ignored))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny project"], root)
    return root


@pytest.fixture(scope="session")
def tiny_template(project_template: Path, tmp_path_factory) -> Path:
    """The tiny project, made once per session (per xdist worker); tests get copies (tiny_project)."""
    return make_tiny_project(copy_project(project_template, tmp_path_factory.mktemp("tiny-template") / "project"))


@pytest.fixture
def tiny_project(tiny_template: Path, tmp_path: Path) -> Path:
    """A committed project copy with tiny params and its (tiny) default dataset version, never reproduced."""
    return copy_project(tiny_template, tmp_path / "project")


@pytest.fixture(scope="session")
def reproduced_template(tiny_template: Path, tmp_path_factory, prefect_api_url: str,
                        session_machine_cache: Path) -> Path:
    """The tiny project after a real `dvc repro` of every stage (preprocess, train, evaluate, publish), made
    once per session (per xdist worker). Its results are not committed: dvc.lock and the evaluate stage's
    files are changes in the workspace, as after a user's `dvc repro`."""
    root = copy_project(tiny_template, tmp_path_factory.mktemp("reproduced-template") / "project")
    # Named here: the first test to need this may be in a module with a machine cache of its own.
    env = {**stage_env(prefect_api_url), "SCENEGAN_CACHE_DIR": str(session_machine_cache)}
    run([DVC, "repro"], root, env)
    return root


@pytest.fixture
def reproduced_project(reproduced_template: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> Path:
    """A copy of reproduced_template: for tests that need a reproduced project, not the reproduction itself."""
    root = copy_project(reproduced_template, tmp_path / "project")
    # The copy must be what `dvc repro` left: every stage up to date (DVC hashes the copied files anew).
    status = json.loads(run([DVC, "status", "--json"], root, subprocess_env).stdout or "{}")
    assert status == {}, f"the copy of the reproduced project is not up to date: dvc status {status}"
    return root
