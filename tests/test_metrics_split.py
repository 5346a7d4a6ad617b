"""metrics.json (numbers, DVC metrics) and evaluation.json (provenance) read back together, old files included.

A real git + DVC repository (no pipeline run: the evaluate outputs are committed by hand) with one revision
per shape of the files: a metrics.json from before the split (strings and all), the two files, and a split
metrics.json committed without its evaluation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import REPO_ROOT, init_git_dvc_repo, load_test_params, run

from ganlib.logs import plain_logger
from ganlib.metrics.report import EvaluationReport, evaluation_record
from ganlib.publish.fid_settings import fid_settings
from ganlib.versions.compare import compare_versions

DATA_MD5 = "0123456789abcdef0123456789abcdef"
SETTINGS = ["compare.drift=false", "compare.include_history=false"]

# A metrics.json as evaluate wrote it before evaluation.json existed: numbers, strings, nulls together.
OLD_METRICS = {
    "fid": 41.5, "kid_mean": 0.01, "kid_std": 0.001, "kid_subset_size": 100, "is_mean": None, "is_std": None,
    "is_unavailable_reason": "no weights", "precision": None, "recall": None, "n_samples": 1000, "n_reference": 1000,
    "batch_size": 50, "seed": 1, "extractor": "fid-inception-v3-tf2015", "extractor_description": "FID Inception",
    "data_md5": DATA_MD5, "dataset_sha256": "ab" * 32, "checkpoint_kimg": 48.0, "resolution": 64, "device": "cpu",
    "notes": [], "fid_ci_low": 40.0, "fid_ci_high": 43.0,
}


def new_report() -> EvaluationReport:
    return EvaluationReport.from_json({
        **OLD_METRICS, "fid": 30.25, "extractor": "fid-inception-v3-tf2015@bf16", "reference_stats_cached": True,
        "notes": ["KID subset size reduced"], "density": 0.9, "coverage": 0.5, "prdc_k": 5,
    })


def commit(root: Path, tag: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", tag], root)
    run(["git", "tag", tag], root)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_the_split_files_hold_numbers_and_provenance_and_read_back_as_one_record():
    report = new_report()
    metrics, provenance = report.metrics_json(), report.provenance_json()
    assert all(type(value) in (int, float) for value in metrics.values())
    assert "is_mean" not in metrics and "batch_size" not in metrics and "fid_noise_low" in metrics
    assert provenance["extractor"] == "fid-inception-v3-tf2015@bf16" and provenance["reference_stats_cached"] is True
    assert provenance["is_unavailable_reason"] == "no weights" and provenance["notes"] == ["KID subset size reduced"]
    record = evaluation_record(metrics, provenance)
    assert record == report.to_json() and EvaluationReport.from_json({**provenance, **metrics}) == report
    assert "reference_stats_cached" not in record   # how the run went: evaluation.json only
    # The gate compares FID settings across the two files as it did within one.
    assert fid_settings(record) == fid_settings({**OLD_METRICS, "extractor": "fid-inception-v3-tf2015@bf16"})
    # A metrics.json from before the split is taken as it is, its old band names mapped.
    old = evaluation_record(OLD_METRICS, None)
    assert old["extractor"] == "fid-inception-v3-tf2015" and old["fid_noise_low"] == 40.0 and "fid_ci_low" not in old


def test_compare_reads_an_old_metrics_json_and_the_split_files_at_their_revisions(tmp_path):
    root = init_git_dvc_repo(tmp_path / "repo")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": f"{DATA_MD5}.dir", "path": "raw"}]}))
    evaluate_dir = root / params["base"]["paths"]["evaluate"]
    write_json(evaluate_dir / "metrics.json", OLD_METRICS)
    commit(root, "old")
    report = new_report()
    write_json(evaluate_dir / "metrics.json", report.metrics_json())
    write_json(evaluate_dir / "evaluation.json", report.provenance_json())
    commit(root, "split")
    (evaluate_dir / "evaluation.json").unlink()
    commit(root, "orphan")

    comparison = compare_versions(root, ["old", "split", "orphan"], load_test_params(SETTINGS), plain_logger("tests"))

    old, split, orphan = comparison.rows
    assert (old.fid, old.extractor, old.n_samples, old.fid_noise_low) == (41.5, "fid-inception-v3-tf2015", 1000, 40.0)
    assert (split.fid, split.extractor, split.density) == (30.25, "fid-inception-v3-tf2015@bf16", 0.9)
    assert split.data_md5 == DATA_MD5 and not any("metrics" in note for note in split.notes)
    assert "extractor fid-inception-v3-tf2015@bf16 vs fid-inception-v3-tf2015" in " ".join(comparison.footnotes())
    # Numbers without the file saying which dataset they were computed on are not pinned on this one.
    assert orphan.fid is None and any("no evaluation.json beside it" in note for note in orphan.notes)
