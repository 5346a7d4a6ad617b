"""Shared fixtures: the repo's params, a real Prefect test server, a temporary DVC repo."""

from __future__ import annotations

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

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session", autouse=True)
def machine_cache(tmp_path_factory) -> Iterator[Path]:
    """Speed-probe choices go to a session directory, not the user's cache (child processes inherit it)."""
    path = tmp_path_factory.mktemp("machine-cache")
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


@pytest.fixture
def subprocess_env(prefect_api_url: str) -> dict[str, str]:
    """Environment for child processes (dvc repro, the CLI) that report to the test server."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = prefect_api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


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


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A scratch git + DVC repository holding a copy of the project's code and params."""
    root = tmp_path / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, root / name)
    return init_git_dvc_repo(root)


def init_git_dvc_repo(root: Path) -> Path:
    """`root` (created if missing) as a git repository with a committer and DVC initialised, analytics off."""
    root.mkdir(parents=True, exist_ok=True)
    dvc = str(Path(sys.executable).with_name("dvc"))
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "scenegan tests"], root)
    run([dvc, "init", "-q"], root)
    run([dvc, "config", "core.analytics", "false"], root)
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


@pytest.fixture
def tiny_project(project_copy: Path) -> Path:
    """A committed project copy with tiny params and its (tiny) default dataset version."""
    set_params(project_copy / "params.yaml", TINY_PIPELINE)
    add_default_dataset(project_copy)
    from ganlib.metrics.weight_files import FID_INCEPTION_FILE

    # The train stage depends on the FID Inception file, so DVC wants it to exist. The tiny extractor
    # reads no weights; anything that did would refuse these bytes (their sha1 is checked).
    (project_copy / "weights").mkdir()
    (project_copy / "weights" / FID_INCEPTION_FILE).write_bytes(b"placeholder: not the FID Inception weights\n")
    ignored = ("/weights/", "/cache/", "/runs/", "/results/gallery/", "/results/model/", "/reports/")
    (project_copy / ".gitignore").write_text("".join(f"{path}\n" for path in ignored))
    run(["git", "add", "-A"], project_copy)
    run(["git", "commit", "-qm", "tiny project"], project_copy)
    return project_copy
