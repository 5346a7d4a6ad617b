"""Comparing dataset versions in a real git + DVC repository with a tiny fake pipeline.

The repository (built once per module) has four commits and one experiment:
    v0     data.dvc for dataset A (3 images); no pipeline run yet: no metrics
    v1     `dvc repro` on A: prepared data and metrics
    v2     dataset B (4 images), reproduced
    lowlr  DVC experiment on v2 with train.lr_g=0.0001 (same data, other metrics)
    stale  dataset C (5 images) committed without re-running the pipeline (HEAD)
The fake stages write a real prepared dataset (ganlib.data.dataset format) and a
metrics.json whose FID encodes the image count and the learning rate, so
every number in the table can be checked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, load_test_params, run
from PIL import Image

from ganlib.config import flatten_dotted
from ganlib.logs import plain_logger
from ganlib.versions.compare import (
    ROW_COLUMNS,
    VersionRow,
    compare_versions,
    added_param_keys,
    differing_param_keys,
    write_comparison,
)
from ganlib.versions.history import append_history_row
from ganlib.versions.revisions import RevisionError

# Building the repository (real `dvc add`, `repro`, `exp run`) takes 15-30 s on 2 busy cores.
pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).with_name("dvc"))
RESOLUTION = 16

PREPARE_SCRIPT = f"""
import hashlib, json, pathlib
import numpy as np, yaml
raw, out = pathlib.Path("data/raw"), pathlib.Path("data/prepared")
out.mkdir(parents=True, exist_ok=True)
seeds = [int(p.read_text()) for p in sorted(raw.glob("*.txt"))]
images = np.stack([np.random.default_rng(s).integers(0, 256, ({RESOLUTION}, {RESOLUTION}, 3), dtype=np.uint8) for s in seeds])
np.save(out / "images.npy", images)
md5 = yaml.safe_load(open("data.dvc"))["outs"][0]["md5"].removesuffix(".dir")
sha = hashlib.sha256((out / "images.npy").read_bytes()).hexdigest()
manifest = dict(format="scenegan-prepared/1", count=len(seeds), resolution={RESOLUTION}, data_md5=md5, images_sha256=sha)
(out / "manifest.json").write_text(json.dumps(manifest))
"""

EVALUATE_SCRIPT = """
import json, pathlib, yaml
manifest = json.loads(pathlib.Path("data/prepared/manifest.json").read_text())
lr = yaml.safe_load(open("params.yaml"))["train"]["lr_g"]
out = pathlib.Path("results/evaluate"); out.mkdir(parents=True, exist_ok=True)
metrics = dict(fid=10.0 * manifest["count"] + 1e4 * lr, kid_mean=0.01 * manifest["count"], kid_std=0.001,
               is_mean=None, is_std=None, is_unavailable_reason="fake", n_samples=8, extractor="fake-extractor",
               data_md5=manifest["data_md5"], checkpoint_kimg=1.0, notes=[])
(out / "metrics.json").write_text(json.dumps(metrics))
"""

DVC_YAML = f"""
stages:
  preprocess:
    cmd: {sys.executable} prepare.py
    deps: [data/raw, prepare.py]
    outs: [data/prepared]
  evaluate:
    cmd: {sys.executable} evaluate.py
    deps: [data/prepared, evaluate.py]
    params: [train.lr_g]
    metrics:
      - results/evaluate/metrics.json:
          cache: false
"""

# Tiny and fast: the random-weight extractor, every image, KID on pairs.
COMPARE_SETTINGS = [
    "evaluate.extractor=tiny-random-conv", "evaluate.device=cpu", "evaluate.n_reference=0",
    "evaluate.metrics=[fid, kid]", "evaluate.kid_subsets=10", "evaluate.kid_subset_size=2",
    "compare.drift=true", "compare.include_history=false",
]


class Versions:
    """The fixture repository and what the test expects of it."""

    def __init__(self, root: Path):
        self.root = root
        self.branch = ""
        self.md5: dict[str, str] = {}   # dataset name -> data.dvc md5
        self.sha: dict[str, str] = {}   # label -> commit


def git(root: Path, *args: str, date: str | None = None) -> str:
    env = dict(os.environ)
    if date:  # fixed, increasing commit times so "oldest first" is well defined
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return run(["git", *args], root, env).stdout.strip()


def dvc(root: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return run([DVC, *args], root, env).stdout


def write_raw(root: Path, seeds: list[int]) -> str:
    raw = root / "data/raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for seed in seeds:
        (raw / f"{seed}.txt").write_text(str(seed))
    dvc(root, "add", "-q", "data/raw")
    return yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"].removesuffix(".dir")


def commit(versions: Versions, label: str, day: int, tag: bool = True) -> None:
    root = versions.root
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", label, date=f"2024-01-0{day}T12:00:00+00:00")
    versions.sha[label] = git(root, "rev-parse", "HEAD")
    if tag:
        git(root, "tag", label)


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> Versions:
    root = tmp_path_factory.mktemp("compare") / "repo"
    root.mkdir()
    versions = Versions(root)
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "scenegan tests")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / "prepare.py").write_text(PREPARE_SCRIPT)
    (root / "evaluate.py").write_text(EVALUATE_SCRIPT)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / ".gitignore").write_text("/cache/\n/reports/\n")
    (root / "data.dvc").write_text("outs:\n- path: data/raw\n")  # DVC records into data.dvc, as the project does

    versions.md5["A"] = write_raw(root, [1, 2, 3])
    commit(versions, "v0", 1)
    dvc(root, "repro", "-q")
    commit(versions, "v1", 2)
    versions.md5["B"] = write_raw(root, [3, 5, 6, 7])  # image 3 also in A: one near-duplicate
    dvc(root, "repro", "-q")
    commit(versions, "v2", 3)
    dvc(root, "exp", "run", "-q", "--name", "lowlr", "--set-param", "train.lr_g=0.0001")
    git(root, "checkout", "-q", "--", ".")  # `exp run` leaves its results in the workspace
    versions.md5["C"] = write_raw(root, [8, 9, 10, 11, 12])
    commit(versions, "stale", 4, tag=False)
    versions.branch = git(root, "branch", "--show-current")
    return versions


@pytest.fixture(scope="module")
def tagged(versions):
    """v1, v2 and the experiment, with drift: computed once, checked by several tests."""
    return compare_versions(versions.root, ["v1", "v2", "lowlr"], load_test_params(COMPARE_SETTINGS), plain_logger("tests"))


def committed_metrics(versions: Versions, rev: str) -> dict:
    return json.loads(git(versions.root, "show", f"{rev}:results/evaluate/metrics.json"))


def test_rows_carry_each_versions_dataset_and_metrics(versions, tagged):
    v1, v2, lowlr = tagged.rows
    assert [r.label for r in tagged.rows] == ["v1", "v2", "lowlr"]
    assert [r.kind for r in tagged.rows] == ["tag", "tag", "experiment"]
    assert v1.commit == versions.sha["v1"] and v2.commit == versions.sha["v2"]
    assert git(versions.root, "rev-parse", f"{lowlr.commit}^") == versions.sha["v2"]  # an experiment on v2
    assert [r.data_md5 for r in tagged.rows] == [versions.md5["A"], versions.md5["B"], versions.md5["B"]]
    assert [r.n_images for r in tagged.rows] == [3, 4, 4]
    assert all(r.resolution == RESOLUTION for r in tagged.rows)
    # Exactly what each revision's metrics.json says (FID = 10 * images + 1e4 * lr_g).
    for row in (v1, v2):
        recorded = committed_metrics(versions, row.label)
        assert (row.fid, row.kid_mean, row.kid_std) == (recorded["fid"], recorded["kid_mean"], recorded["kid_std"])
    assert lowlr.fid == pytest.approx(41.0) and v2.fid == pytest.approx(42.0) and v1.fid == pytest.approx(32.0)
    assert lowlr.extractor == "fake-extractor" and lowlr.checkpoint_kimg == 1.0 and lowlr.n_samples == 8
    assert all(r.notes == () for r in tagged.rows)


def test_only_differing_params_are_columns(tagged):
    assert tagged.param_keys == ("train.lr_g",)
    assert [r.params["train.lr_g"] for r in tagged.rows] == [0.0002, 0.0002, 0.0001]


def test_drift_is_real_vs_real_fid_from_the_previous_row(versions, tagged):
    v1, v2, lowlr = tagged.rows
    assert v1.drift_fid_from_previous is None  # nothing before it
    assert v2.drift_fid_from_previous > 0 and v2.drift_kid_from_previous is not None
    assert lowlr.drift_fid_from_previous == 0.0  # same images as v2
    # How many images already appeared (perceptually) in the previous version.
    assert [r.near_duplicates_in_previous for r in tagged.rows] == [None, 1, 4]
    # FID is symmetric: the other order gives the same number (from the same cached statistics).
    reverse = compare_versions(versions.root, ["v2", "v1"], load_test_params(COMPARE_SETTINGS), plain_logger("tests"))
    assert reverse.rows[1].drift_fid_from_previous == pytest.approx(v2.drift_fid_from_previous, rel=1e-6, abs=1e-9)


def test_csv_markdown_and_table_rows(versions, tagged):
    records = list(csv.DictReader(io.StringIO(tagged.to_csv())))
    assert list(records[0]) == [*ROW_COLUMNS, "not_comparable_with_previous", "train.lr_g"]
    assert [r["label"] for r in records] == ["v1", "v2", "lowlr"]
    assert [r["data_md5"] for r in records] == [versions.md5["A"], versions.md5["B"], versions.md5["B"]]
    assert [float(r["fid"]) for r in records] == [row.fid for row in tagged.rows]  # unrounded
    assert records[0]["drift_fid_from_previous"] == "" and float(records[2]["train.lr_g"]) == 0.0001

    table = tagged.table_rows()
    assert all(list(row) == list(table[0]) for row in table) and "train.lr_g" in table[0]
    assert table[1]["dataset"] == versions.md5["B"][:8] and table[1]["KID"] == "0.04 ± 0.001"

    markdown = tagged.to_markdown()
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3
    assert lines[0].startswith("| ≠ | version | kind | commit | date | dataset | images |")
    assert f"| v1 | tag | {versions.sha['v1'][:8]} | {tagged.rows[0].date[:10]} | {versions.md5['A'][:8]} | 3 |" in markdown
    assert "| lowlr | experiment |" in markdown and "| 0.0001 |" in markdown


def test_write_comparison_files(tagged, tmp_path):
    out = tmp_path / "reports"
    written = write_comparison(tagged, out)
    assert set(written) == {"csv", "markdown", "png"}
    assert written["csv"].read_text() == tagged.to_csv()
    assert written["markdown"].read_text() == tagged.to_markdown()
    png = written["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with Image.open(png) as image:
        assert image.width >= 500 and image.height >= 3 * 200  # three panels: fid, kid_mean, drift
    write_comparison(tagged, out)  # rewriting leaves no temporary files behind
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.md", "compare.png"]


def test_missing_and_stale_metrics_are_blank_rows_with_notes(versions):
    comparison = compare_versions(
        versions.root, ["v0", versions.sha["stale"], "workspace"], load_test_params(COMPARE_SETTINGS), plain_logger("tests")
    )
    v0, stale, workspace = comparison.rows
    assert v0.data_md5 == versions.md5["A"] and v0.fid is None and v0.n_images is None
    assert any("no metrics" in note and "missing" in note for note in v0.notes)
    assert any("no prepared dataset" in note for note in v0.notes)
    # Committed data.dvc for C but metrics and prepared data still of B: both dropped, not misattributed.
    for row in (stale, workspace):
        assert row.data_md5 == versions.md5["C"] and row.fid is None and row.kid_mean is None and row.n_images is None
        assert any(f"computed on dataset {versions.md5['B'][:8]}" in note for note in row.notes)
        assert any("drift unavailable" in note for note in row.notes)
    assert stale.kind == "commit" and workspace.kind == "workspace" and workspace.commit == versions.sha["stale"]
    assert "no metrics" in comparison.to_markdown()


def test_unknown_revision_is_an_error_naming_it(versions, tmp_path):
    params = load_test_params(COMPARE_SETTINGS)
    with pytest.raises(RevisionError, match="'no-such-version'.*dvc exp list"):
        compare_versions(versions.root, ["v1", "no-such-version"], params, plain_logger("tests"))
    with pytest.raises(RevisionError, match="not a git repository"):
        compare_versions(tmp_path, ["v1"], params, plain_logger("tests"))


def test_default_revisions_are_each_dataset_version_once(versions):
    params = load_test_params([*COMPARE_SETTINGS, "compare.drift=false"])
    comparison = compare_versions(versions.root, [], params, plain_logger("tests"))
    # v0 (no metrics) folds into v1 (same data and params); the experiment ran last.
    assert [(r.label, r.kind) for r in comparison.rows] == [("v1", "tag"), ("v2", "tag"), ("lowlr", "experiment")]
    assert [r.data_md5 for r in comparison.rows] == [versions.md5[d] for d in "ABB"]
    # HEAD's commit and the workspace (identical: dataset C committed, not reproduced) have no
    # metrics: not a row, one line saying why, under the branch name.
    assert [s.line() for s in comparison.skipped] == [
        f"skipped {versions.branch} (branch {versions.sha['stale'][:8]}): dataset {versions.md5['C'][:8]}, "
        f"no metrics: results/evaluate/metrics.json was computed on dataset {versions.md5['B'][:8]}, "
        f"not this revision's {versions.md5['C'][:8]} (stale: run `dvc repro` and commit)"
    ]
    assert comparison.footnotes()[0] == comparison.skipped[0].line()
    assert comparison.skipped[0].line() in comparison.to_markdown().replace("\\`", "`")


def test_drift_without_cached_data_is_a_note(versions, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(versions.root, copy, symlinks=True)
    dvc(copy, "gc", "--workspace", "--force", "-q")  # drops v1's prepared data from the cache
    comparison = compare_versions(copy, ["v1", "v2"], load_test_params(COMPARE_SETTINGS), plain_logger("tests"))
    v1, v2 = comparison.rows
    assert v1.fid == pytest.approx(32.0) and v1.n_images is None
    assert any("not in the local DVC cache" in note for note in v1.notes)
    assert v2.drift_fid_from_previous is None
    assert any("drift unavailable" in note and "v1" in note for note in v2.notes)


def test_history_rows_come_first_and_skip_listed_experiments(versions, tmp_path):
    history = tmp_path / "history.csv"
    append_history_row(history, {"date": "2024-02-01T03:00:00Z", "data_md5": "f" * 32, "n_images": 9,
                                 "experiment": "retrain-ffffffff", "fid": 50.5, "kid_mean": 0.2, "extractor": "x"})
    append_history_row(history, {"date": "2024-02-02T03:00:00Z", "data_md5": versions.md5["B"], "experiment": "lowlr", "fid": 41.0})
    params = load_test_params([*COMPARE_SETTINGS, "compare.drift=false", "compare.include_history=true",
                               f"base.paths.history={history}"])
    comparison = compare_versions(versions.root, ["v2", "lowlr"], params, plain_logger("tests"))
    first = comparison.rows[0]
    assert [(r.label, r.kind) for r in comparison.rows] == [("retrain-ffffffff", "history"), ("v2", "tag"), ("lowlr", "experiment")]
    assert (first.fid, first.kid_mean, first.n_images, first.data_md5) == (50.5, 0.2, 9, "f" * 32)
    assert comparison.param_keys == ("train.lr_g",)  # history rows have no params to differ
    assert "retrain-ffffffff" in comparison.to_csv()


def test_differing_params_by_value_a_key_one_side_lacks_is_added_not_different():
    rows = [flatten_dotted(p) for p in (
        {"train": {"lr": 0.1, "betas": [0.5, 0.9], "arch": "dcgan"}, "a": {"b": {"c": 1}}},
        {"train": {"lr": 0.1, "betas": [0.5, 0.99], "arch": "dcgan"}, "a": {"b": {"c": 1}}, "extra": {"k": None}},
    )]
    assert rows[0]["a.b.c"] == 1

    class Row:
        def __init__(self, params):
            self.params = params

    assert differing_param_keys([Row(p) for p in rows] + [Row(None)]) == ("train.betas",)
    assert added_param_keys([Row(p) for p in rows] + [Row(None)]) == ("extra.k",)


def test_the_fid_panel_draws_the_sampling_noise_band_and_kid_its_std():
    from ganlib.versions.plot import METRIC_COLUMNS, _error_bars

    def row(label, fid, low, high, kid=None, kid_std=None):
        return VersionRow(label, "tag", None, None, None, None, None, None, fid, kid, kid_std, None, None, None, None,
                          None, None, (), fid_noise_low=low, fid_noise_high=high)

    rows = [row("a", 218.8, 214.1, 223.9, 0.04, 0.001), row("b", 200.0, None, None), row("c", None, None, None)]
    values = [218.8, 200.0, float("nan")]
    below, above = _error_bars(rows, values, METRIC_COLUMNS["fid"][1])
    assert below == pytest.approx([4.7, 0.0, 0.0]) and above == pytest.approx([5.1, 0.0, 0.0])   # asymmetric
    assert "sampling-noise band" in METRIC_COLUMNS["fid"][2] and "not an interval on the true FID" in METRIC_COLUMNS["fid"][2]
    kid_below, kid_above = _error_bars(rows, [0.04, float("nan"), float("nan")], METRIC_COLUMNS["kid_mean"][1])
    assert kid_below == kid_above == pytest.approx([0.001, 0.0, 0.0])
