"""What evaluation writes: metrics.json, scores/ (DVC metrics), evaluation.json, params.json, the table, the training curve."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from test_metrics_support import TinyGenerator, TinyInfo, empty_torch_hub, project, tiny_params  # noqa: F401

from ganlib.logs import plain_logger
from ganlib.metrics.during_training import TrainingEvaluator, curve_path, read_curve
from ganlib.metrics.evaluate import measure_generator, score_generator, write_evaluation
from ganlib.metrics.report import render_table

LOG = plain_logger("scenegan-tests")

# metrics.json: numbers only (DVC metric columns). evaluation.json: what they were measured with and on.
REQUIRED = {
    "fid": float, "kid_mean": float, "kid_std": float, "precision": float, "recall": float, "density": float,
    "coverage": float, "prdc_k": int, "n_samples": int, "n_reference": int, "seed": int, "checkpoint_kimg": float,
    "resolution": int,
}
PROVENANCE = {
    "is_unavailable_reason": str, "extractor": str, "extractor_description": str, "data_md5": str,
    "dataset_sha256": str, "device": str, "batch_size": int, "reference_stats_cached": bool, "notes": list,
}


def test_metrics_json_holds_numbers_only_and_evaluation_json_the_provenance(tmp_path, empty_torch_hub):
    from ganlib.metrics.report import EvaluationReport, read_evaluation

    root = project(tmp_path)
    params = tiny_params("evaluate.metrics=[fid,kid,is,prdc,memorisation]")
    evaluation = measure_generator(TinyGenerator(), TinyInfo(kimg=2.5), params, LOG, root)
    out_dir = root / params.base.paths.evaluate
    path = write_evaluation(evaluation, params, out_dir)

    metrics = json.loads(path.read_text())
    assert metrics and all(type(value) in (int, float) for value in metrics.values()), metrics  # no bool, str, null
    for key, kind in REQUIRED.items():
        assert isinstance(metrics[key], kind), (key, metrics[key])
    assert "is_mean" not in metrics and "is_std" not in metrics   # asked for, unavailable: absent, the reason beside
    assert metrics["n_samples"] == 40 and metrics["seed"] == 12345 and metrics["checkpoint_kimg"] == 2.5
    assert metrics["resolution"] == 16
    for key in ("density", "coverage", "memorisation", "memorisation_pixels", "memorisation_baseline"):
        assert isinstance(metrics[key], float), (key, metrics[key])
    assert metrics["prdc_k"] == 5 and metrics["memorisation_n"] == 40 and metrics["memorisation_baseline"] == 0.05

    provenance = json.loads((out_dir / "evaluation.json").read_text())
    for key, kind in PROVENANCE.items():
        assert isinstance(provenance[key], kind), (key, provenance[key])
    assert not set(provenance) & set(metrics)
    assert provenance["extractor"] == "tiny-random-conv" and provenance["batch_size"] == 16
    assert len(provenance["dataset_sha256"]) == 64 and "not found" in provenance["is_unavailable_reason"]
    # The project's own folders by their params.yaml names: it reads the same in a DVC experiment's copy.
    assert str(root / params.base.paths.weights) not in json.dumps(provenance)

    # Read back together, the two files are the report.
    assert read_evaluation(out_dir) == evaluation.report.to_json()
    assert EvaluationReport.from_json({**provenance, **metrics}) == evaluation.report
    recorded = json.loads((out_dir / "params.json").read_text())
    assert recorded["evaluate"]["n_samples"] == 40
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "evaluation.json", "memorisation.json", "metrics.json", "params.json", "scores", "truncation.json"]

    # DVC's metrics: a file per metric computed (IS was not), built from metrics.json's numbers.
    scores = {p.name: json.loads(p.read_text()) for p in (out_dir / "scores").iterdir()}
    assert sorted(scores) == ["coverage.json", "density.json", "fid.json", "kid.json", "memorisation.json",
                              "precision.json", "recall.json"]
    assert scores["fid.json"]["value"] == metrics["fid"] and scores["kid.json"]["std"] == metrics["kid_std"]
    assert scores["memorisation.json"]["pixels"] == metrics["memorisation_pixels"]

    # A later evaluation without a metric leaves no stale file of it: the folder is rewritten.
    fewer = measure_generator(TinyGenerator(), TinyInfo(kimg=2.5), tiny_params("evaluate.metrics=[fid,kid]"), LOG, root)
    write_evaluation(fewer, params, out_dir)
    assert sorted(p.name for p in (out_dir / "scores").iterdir()) == ["fid.json", "kid.json"]


def test_table_and_rows_state_samples_seed_and_extractor(tmp_path, empty_torch_hub):
    root = project(tmp_path)
    report = score_generator(TinyGenerator(), TinyInfo(), tiny_params("evaluate.metrics=[fid,is]"), LOG, root)
    rows = report.report_rows()
    assert all(set(row) == {"metric", "value", "detail"} for row in rows)
    by_metric = {row["metric"]: row for row in rows}
    assert by_metric["FID"]["value"] != "n/a"
    assert by_metric["IS"]["value"] == "n/a" and by_metric["IS"]["detail"].startswith("unavailable:")
    assert by_metric["KID"]["detail"] == "not computed"
    table = render_table(rows)
    for text in ("FID", "samples", "40", "seed 12345", "tiny-random-conv"):
        assert text in table


def test_training_curve_every_n_kimg_with_resume(tmp_path):
    root = project(tmp_path)
    params = tiny_params("evaluate.during_training.every_kimg=2", "evaluate.during_training.n_samples=20")
    curve = curve_path(root / params.base.paths.train)
    evaluator = TrainingEvaluator(params, LOG, root, curve, torch.device("cpu"))
    generator = TinyGenerator().train()
    measured = [kimg for kimg in (0.5, 1.0, 2.0, 2.5, 3.0, 4.5) if evaluator.maybe_measure(generator, 8, kimg)]
    assert measured == [2.0, 4.5]
    assert generator.training

    rows = read_curve(curve)
    assert [r["kimg"] for r in rows] == [2.0, 4.5]
    assert all(r["n_samples"] == 20 and r["fid"] > 0 for r in rows)
    with open(curve, newline="") as handle:
        assert next(csv.reader(handle)) == ["kimg", "fid", "kid_mean", "kid_std", "n_samples", "settings"]
    assert len({r["settings"] for r in rows}) == 1 and len(rows[0]["settings"]) == 12

    # A resumed run (from a checkpoint at 4 kimg) replaces the points it re-measures.
    resumed = TrainingEvaluator(params, LOG, root, curve, torch.device("cpu"))
    assert not resumed.due(4.5) and resumed.due(6.0)
    resumed.measure(generator, 8, 4.0)
    assert [r["kimg"] for r in read_curve(curve)] == [2.0, 4.0]


@pytest.mark.parametrize("change", ["evaluate.kid_subsets=3", "evaluate.kid_subset_size=6", "evaluate.batch_size=7",
                                    "evaluate.seed=5", "evaluate.during_training.n_samples=22"])
def test_a_resumed_run_whose_curve_settings_changed_starts_a_new_curve(tmp_path, change):
    root = project(tmp_path)
    first = tiny_params("evaluate.during_training.every_kimg=2", "evaluate.during_training.n_samples=20")
    curve = curve_path(root / first.base.paths.train)
    TrainingEvaluator(first, LOG, root, curve, torch.device("cpu")).measure(TinyGenerator(), 8, 2.0)
    old_rows = read_curve(curve)

    changed = tiny_params("evaluate.during_training.every_kimg=2", "evaluate.during_training.n_samples=20", change)
    resumed = TrainingEvaluator(changed, LOG, root, curve, torch.device("cpu"))
    assert resumed.due(2.0)  # the old points are not this curve's: measure from the start again
    resumed.measure(TinyGenerator(), 8, 4.0)
    rows = read_curve(curve)
    assert [r["kimg"] for r in rows] == [4.0] and rows[0]["settings"] != old_rows[0]["settings"]
    kept = list((curve.parent / "superseded-curves").iterdir())
    assert [read_curve(path) for path in kept] == [old_rows]  # set aside, not deleted

    # The same settings again: the curve goes on.
    again = TrainingEvaluator(changed, LOG, root, curve, torch.device("cpu"))
    assert not again.due(4.5) and [r["kimg"] for r in read_curve(curve)] == [4.0]


def test_training_curve_off_measures_nothing(tmp_path):
    root = project(tmp_path)
    params = tiny_params("evaluate.during_training.every_kimg=0")
    evaluator = TrainingEvaluator(params, LOG, root, curve_path(root / params.base.paths.train), torch.device("cpu"))
    assert evaluator.maybe_measure(TinyGenerator(), 8, 100.0) is None
    assert not curve_path(root / params.base.paths.train).exists()


def test_training_curve_off_needs_no_weights(tmp_path):
    root = project(tmp_path)
    params = tiny_params("evaluate.extractor=fid-inception-v3-tf2015", f"base.paths.weights={tmp_path / 'none'}",
                         "evaluate.during_training.every_kimg=0")
    evaluator = TrainingEvaluator(params, LOG, root, curve_path(root / params.base.paths.train), torch.device("cpu"))
    assert evaluator.maybe_measure(TinyGenerator(), 8, 10.0) is None


def test_evaluate_generator_stage_end_to_end(tmp_path, empty_torch_hub):
    """generator.pt (the training side's real file format) -> metrics.json + params.json."""
    from test_metrics_support import smooth_images, write_prepared_dataset

    from ganlib.data.dataset import open_prepared
    from ganlib.metrics.evaluate import evaluate_generator
    from ganlib.models.generator_file import GeneratorInfo, save_generator
    from ganlib.models.registry import build_generator, generator_kwargs

    params = tiny_params("train.arch=dcgan", "train.z_dim=16", "train.g_width=4", "evaluate.metrics=[fid,kid,is]")
    write_prepared_dataset(tmp_path / params.base.paths.prepared, smooth_images(24, seed=4, resolution=32))
    dataset = open_prepared(tmp_path / params.base.paths.prepared)
    torch.manual_seed(0)
    info = GeneratorInfo("dcgan", 16, 32, 7.5, dataset.data_md5, dataset.content_hash, "f" * 16)
    save_generator(tmp_path / params.base.paths.train / "generator.pt", build_generator(params.train, 32), info,
                   generator_kwargs(params.train, 32))

    report = evaluate_generator(params, LOG, tmp_path)
    metrics = json.loads((tmp_path / params.base.paths.evaluate / "metrics.json").read_text())
    provenance = json.loads((tmp_path / params.base.paths.evaluate / "evaluation.json").read_text())
    assert metrics["checkpoint_kimg"] == 7.5 and metrics["fid"] == report.fid > 0
    assert "is_mean" not in metrics and "not found" in provenance["is_unavailable_reason"]
    assert metrics["kid_subset_size"] == 16 and metrics["resolution"] == 32
    assert provenance["data_md5"] == dataset.data_md5
    assert (tmp_path / params.base.paths.evaluate / "params.json").is_file()


def test_evaluate_generator_without_a_trained_generator_says_what_to_run(tmp_path):
    import pytest

    from ganlib.errors import UserFacingError
    from ganlib.metrics.evaluate import evaluate_generator

    root = project(tmp_path)
    with pytest.raises(UserFacingError, match="run the train stage"):
        evaluate_generator(tiny_params(), LOG, root)
    assert not (root / tiny_params().base.paths.evaluate).exists()
