"""Scheduled retraining end to end: dataset v1 -> retrain -> v2 -> retrain -> compare.

Real DVC experiments in a temporary git repository (the tiny project, reproduced
once per session by conftest), real flows on the test Prefect server; only the
sizes are tiny.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run, set_params

from ganlib.io.provenance import dvc_tracked_md5
from ganlib.versions.history import read_history


def dvc(root: Path, *args: str) -> str:
    return run([str(Path(sys.executable).with_name("dvc")), *args], root).stdout


def new_dataset_version(root: Path, n_images: int, seed: int) -> str:
    """What a user does: put new images in data/raw, `dvc add`, commit."""
    from ganlib.data.scenes import write_default_dataset
    from ganlib.logs import plain_logger

    set_params(root / "params.yaml", [f"data.n_images={n_images}", f"data.seed={seed}"])
    write_default_dataset(root / "data/raw", n_images, 32, seed, plain_logger("tests"), overwrite=True)
    dvc(root, "add", "data/raw")
    run(["git", "add", "data.dvc", "params.yaml"], root)
    run(["git", "commit", "-qm", f"dataset: {n_images} images, seed {seed}"], root)
    return dvc_tracked_md5(root / "data.dvc")


def snapshot(root: Path) -> dict[str, bytes]:
    files = ["results/evaluate/metrics.json", "results/history.csv", "results/gallery/index.html",
             "results/gallery/manifest.json", "runs/train/generator.pt"]
    return {name: (root / name).read_bytes() for name in files}


@pytest.mark.slow
def test_retrain_over_two_dataset_versions_says_kept_published_or_nothing_to_do_and_compares_them(
        reproduced_project, subprocess_env, monkeypatch):
    """One walk (each step's retrain is real work, so the steps share it): dataset v1 reproduced and committed
    -> retrain (kept: already published) -> retrain (nothing to do) -> dataset v2 -> retrain (published,
    committed) -> compare the two retrains -> retrain under better_fid (kept, with the numbers) -> a failed
    retrain, which leaves everything as it was."""
    from flows.compare import compare_flow
    from flows.retrain import retrain_flow
    from ganlib.config import load_params
    from ganlib.versions.commit import commit_version

    # Stage subprocesses (dvc exp run) report to the same test server.
    monkeypatch.setenv("PREFECT_API_URL", subprocess_env["PREFECT_API_URL"])
    monkeypatch.setenv("PATH", subprocess_env["PATH"])
    root, params_file = reproduced_project, str(reproduced_project / "params.yaml")
    history = root / "results/history.csv"
    v1 = dvc_tracked_md5(root / "data.dvc")

    # An already reproduced and committed dataset version (the README's flow: dvc repro, commit-version):
    # the publish stage is up to date, so the first retrain publishes nothing and must not say it did.
    commit_version(load_params(params_file), root, "dataset v1 reproduced")
    published_before = json.loads((root / "results/publish.json").read_text())
    first = retrain_flow(params_file=params_file)
    text = summary_text(first)
    assert first["status"] == "retrained" and first["data_md5"] == v1
    assert [row["data_md5"] for row in read_history(history)] == [v1]
    assert first["outcome"] == "kept" and first["published"] == "up to date", first
    assert first["release"] == published_before["release"]
    assert "first retrain of this project" in text and "untracked" not in text
    assert f"Kept the gallery as it was (release {published_before['release']})" in text
    assert "already published" in text
    # Every file the retrain wrote is ignored, or named in the Next: line to commit (history.csv among them).
    assert "results/history.csv" in first["to_commit"]
    assert untracked_or_modified(root) <= set(first["to_commit"]), untracked_or_modified(root)
    assert "Next: `scenegan commit-version -m" in text
    commit_version(load_params(params_file), root, "v1 retrained")
    assert untracked_or_modified(root) == set()

    nothing = retrain_flow(params_file=params_file)
    assert nothing["status"] == nothing["outcome"] == "nothing to do"
    assert "nothing to do; dataset version" in summary_text(nothing)
    assert len(read_history(history)) == 1

    # A new dataset version, the gate `always`, retrain.commit: published, and nothing left to commit.
    set_params(root / "params.yaml", ["retrain.commit=true"])
    v2 = new_dataset_version(root, n_images=40, seed=7)
    assert v2 != v1
    published = retrain_flow(params_file=params_file)
    text = summary_text(published)
    assert published["status"] == "retrained" and published["previous_md5"] == v1
    rows = read_history(history)
    assert [row["data_md5"] for row in rows] == [v1, v2]
    assert [row["n_images"] for row in rows] == ["48", "40"]
    assert published["outcome"] == "published" and published["release"] != published_before["release"]
    assert f"Published release {published['release']}" in text and "publish.gate is always" in text
    assert published["committed"] and published["to_commit"] == [] and untracked_or_modified(root) == set()
    assert f"as {published['committed']} (retrain.commit)" in text

    # Each retrain is a DVC experiment with its metrics (the first one too, though it reproduced nothing).
    experiments = {exp["name"]: exp for exp in _experiments(root)}
    assert {rows[0]["experiment"], rows[1]["experiment"]} <= set(experiments)

    result = compare_flow(params_file=params_file, revs=[rows[0]["experiment"], rows[1]["experiment"]])
    by_md5 = {record["data_md5"]: record for record in result["rows"]}
    assert set(by_md5) == {v1, v2}
    for row in rows:
        assert by_md5[row["data_md5"]]["fid"] == pytest.approx(float(row["fid"]))
        assert by_md5[row["data_md5"]]["n_images"] == int(row["n_images"])
    assert by_md5[v2]["drift_fid_from_previous"] > 0
    # (No param columns here: since 71074ee compare shows the params a stage used, and only data.* differs.)
    for path in result["files"].values():
        assert Path(path).stat().st_size > 0

    # The same model again under the better_fid gate: not better by more than the noise, so kept, with the numbers.
    set_params(root / "params.yaml", ["publish.gate=better_fid"])
    run(["git", "commit", "-qm", "gate: better_fid", "params.yaml"], root)
    kept = retrain_flow(params_file=params_file, force=True)
    text = summary_text(kept)
    record = json.loads((root / "results/publish.json").read_text())
    assert kept["outcome"] == "kept" and kept["published"] == "skipped" and record["status"] == "skipped"
    assert kept["comparison"] == record["comparison"] and kept["reason"] == record["reason"]
    assert f"Kept the gallery as it was (release {published['release']})" in text
    assert "this model: FID" in text and "published: FID" in text and "the gate's rule: the noise bands" in text
    assert [row["published"] for row in read_history(history)] == ["up to date", "published", "skipped"]

    # A retrain that fails (here: evaluation cannot find the Inception weights)
    # leaves the previous results, gallery and history exactly as they were.
    before = snapshot(root)
    set_params(root / "params.yaml", ["evaluate.extractor=fid-inception-v3-tf2015"])
    new_dataset_version(root, n_images=44, seed=8)
    with pytest.raises(Exception, match="exp run"):
        retrain_flow(params_file=params_file)
    assert snapshot(root) == before


def _experiments(root: Path) -> list[dict]:
    found = []
    for baseline in json.loads(dvc(root, "exp", "show", "--json", "--all-commits")):
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                found.append({"name": revision.get("name"), "data": revision.get("data", {})})
    return found


def summary_text(outcome: dict) -> str:
    import io

    from flows.output import emit
    from flows.results import retrain_result

    buffer = io.StringIO()
    emit(retrain_result(outcome), as_json=False, stream=buffer)
    return buffer.getvalue()


def untracked_or_modified(root: Path) -> set[str]:
    return {line[3:] for line in run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout.splitlines()}
