"""`scenegan commit-version -m MSG`: the dataset version and its results in one commit, only when reproduced.

A real git + DVC tiny project; `dvc repro` runs the real stages (reporting to the test Prefect server). The
first dataset version starts reproduced (conftest's reproduced_project); the second is reproduced here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run

from ganlib.io.provenance import dvc_tracked_md5

EVALUATE = ["results/evaluate/metrics.json", "results/evaluate/evaluation.json", "results/evaluate/memorisation.json",
            "results/evaluate/truncation.json"]
# DVC's metrics, a file per metric computed (IS needs weights the tiny project lacks).
SCORES = [f"results/evaluate/scores/{name}.json"
          for name in ("coverage", "density", "fid", "kid", "memorisation", "precision", "recall")]
RESULTS = ["dvc.lock", *EVALUATE, *SCORES, "results/evaluate/params.json", "results/publish.json"]


def scenegan(root: Path, env: dict[str, str], *args: str):
    return run([str(Path(sys.executable).with_name("scenegan")), *args], root, env=env, check=False)


def dvc(root: Path, env: dict[str, str], *args: str) -> None:
    run([str(Path(sys.executable).with_name("dvc")), *args], root, env=env)


def committed_files(root: Path) -> list[str]:
    """The files HEAD changed (`git show --stat`, names only)."""
    return sorted(run(["git", "show", "--name-only", "--format=", "HEAD"], root).stdout.split())


def test_commit_version_refuses_a_project_never_reproduced(tiny_project):
    # commit-version reads `dvc status` and runs git: no Prefect server, no stage.
    root, env = tiny_project, dict(os.environ)
    head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()

    # Never reproduced: every stage differs from dvc.lock (there is none yet).
    refused = scenegan(root, env, "commit-version", "-m", "v1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "`dvc status` reports changes" in refused.stderr and "preprocess:" in refused.stderr
    assert "`dvc repro`" in refused.stderr
    assert run(["git", "rev-parse", "HEAD"], root).stdout.strip() == head  # nothing committed


@pytest.mark.slow
def test_commit_version_commits_exactly_the_version_files_only_when_reproduced(reproduced_project, subprocess_env):
    # The tiny project after `dvc repro` (conftest: its results not committed yet).
    root, env = reproduced_project, subprocess_env
    (root / "notes.txt").write_text("someone else's change, not part of the version\n")
    run(["git", "add", "notes.txt"], root)  # staged by the user: must stay out of this commit
    done = scenegan(root, env, "commit-version", "-m", "results of v1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["commit"] and result["data_md5"] == dvc_tracked_md5(root / "data.dvc")
    # data.dvc was committed with the dataset already; DVC's data/.gitignore now also ignores data/prepared.
    assert committed_files(root) == sorted([*RESULTS, "data/.gitignore"])
    assert run(["git", "log", "-1", "--format=%s"], root).stdout.strip() == "results of v1"
    assert "notes.txt" in run(["git", "diff", "--cached", "--name-only"], root).stdout

    # Again, nothing changed: nothing to commit, not an error.
    again = scenegan(root, env, "commit-version", "-m", "again")
    assert again.returncode == 0 and "Nothing to commit" in again.stdout

    # A new dataset version recorded with `dvc add` but not reproduced: refused, naming what changed.
    from ganlib.data.scenes import write_default_dataset
    from ganlib.logs import plain_logger

    write_default_dataset(root / "data/raw", 40, 32, 7, plain_logger("tests"), overwrite=True)
    dvc(root, env, "add", "data/raw")
    refused = scenegan(root, env, "commit-version", "-m", "v2")
    assert refused.returncode == 2 and "data/raw" in refused.stderr and "`dvc repro`" in refused.stderr

    dvc(root, env, "repro")
    done = scenegan(root, env, "commit-version", "-m", "dataset v2")
    assert done.returncode == 0, done.stdout + done.stderr
    short = run(["git", "rev-parse", "--short", "HEAD"], root).stdout.strip()
    assert f"Committed {short}: dataset version {dvc_tracked_md5(root / 'data.dvc')[:8]} (data.dvc)" in done.stdout
    # evaluate/params.json records the evaluate params, which this version did not change.
    committed = committed_files(root)
    assert [path for path in committed if path not in SCORES] == sorted(
        ["data.dvc", "dvc.lock", *EVALUATE, "results/publish.json"])
    # The score files whose numbers changed (a figure such as precision 1.0 may not have): FID and KID did.
    assert {"results/evaluate/scores/fid.json", "results/evaluate/scores/kid.json"} <= set(committed)
    assert json.loads(run([str(Path(sys.executable).with_name("dvc")), "status", "--json"], root, env=env).stdout) == {}

    # `scenegan compare`, no arguments: the two committed versions, oldest first, each with its FID and the
    # second with its drift from the first. The first commit (data.dvc before any results) folds into v1.
    v1_commit = run(["git", "rev-parse", "HEAD~1"], root).stdout.strip()
    compared = scenegan(root, env, "compare", "--json")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    result = json.loads(compared.stdout)
    rows = result["rows"]
    assert [row["commit"] for row in rows] == [v1_commit, run(["git", "rev-parse", "HEAD"], root).stdout.strip()]
    assert rows[0]["label"] == f"{v1_commit[:8]} results of v1"
    assert [row["data_md5"] for row in rows] == [run(["git", "show", f"{rev}:data.dvc"], root).stdout.split("md5: ")[1][:32]
                                                 for rev in ("HEAD~1", "HEAD")]
    assert all(row["fid"] > 0 for row in rows)
    assert rows[0]["drift_fid_from_previous"] is None
    assert rows[1]["drift_fid_from_previous"] is not None and rows[1]["drift_fid_from_previous"] > 0, rows[1]["note"]
    assert result["skipped"] == []  # the workspace equals HEAD: not a row of its own
    human = scenegan(root, env, "compare")
    assert human.returncode == 0 and all(len(line) <= 120 for line in human.stdout.splitlines())
    assert "results of v1" in human.stdout and "drift FID" in human.stdout
