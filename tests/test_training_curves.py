"""What the train stage logs at its ticks: the FID curve and the dvclive log.

The FID curve has one point per due interval, is published with the outputs, and
measuring it does not change what is trained. The dvclive log (base.paths.live)
has every tick's losses, img/s, diversity, FID where measured, and the sample
grid, with the number of images shown as its step; a run that resumes after its
log was deleted (as `dvc repro` deletes a stage's outputs) logs the same steps
and losses as a run that was never interrupted."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from train_support import one_thread, smooth_images, tiny_params, write_prepared  # noqa: F401

from ganlib.logs import plain_logger
from ganlib.stages.train import train_with_curves
from ganlib.training.distributed import SINGLE_PROCESS

LOG = plain_logger("scenegan-tests")
CURVE = ("evaluate.extractor=tiny-random-conv", "evaluate.during_training.n_samples=16", "evaluate.kid_subset_size=8")


def train(root: Path, *overrides: str):
    params = tiny_params(*CURVE, *overrides)
    if not (root / params.base.paths.prepared).exists():
        write_prepared(root, params, smooth_images(64, 32))
    train_with_curves(params, LOG, root, world=SINGLE_PROCESS)
    return params


def tsv(live: Path, name: str) -> list[dict[str, str]]:
    with (live / "plots" / "metrics" / f"{name}.tsv").open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_curve_has_a_point_per_interval_and_leaves_training_unchanged(tmp_path, one_thread):
    with_curve = train(tmp_path / "a", "evaluate.during_training.every_kimg=0.128")
    without = train(tmp_path / "b", "evaluate.during_training.every_kimg=0")

    out = tmp_path / "a" / with_curve.base.paths.train
    rows = list(csv.DictReader((out / "fid_curve.csv").open()))
    # ticks every 0.064 kimg up to 0.32: points at the first tick past 0.128 and 0.256
    assert [round(float(r["kimg"]), 3) for r in rows] == [0.128, 0.256]
    assert all(float(r["fid"]) >= 0 and int(r["n_samples"]) == 16 for r in rows)
    assert not (tmp_path / "b" / without.base.paths.train / "fid_curve.csv").exists()

    trained = [torch.load(root / p.base.paths.train / "generator.pt", weights_only=True)["state_dict"]
               for root, p in ((tmp_path / "a", with_curve), (tmp_path / "b", without))]
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])

    # The dvclive log: a row per tick, steps in images shown, FID at the measured ticks, a grid per tick.
    live = tmp_path / "a" / with_curve.base.paths.live
    steps = [64 * i for i in range(1, 6)]
    assert [int(r["step"]) for r in tsv(live, "loss_d")] == steps
    assert [float(r["kimg"]) for r in tsv(live, "kimg")] == pytest.approx([s / 1000 for s in steps])
    assert [int(r["step"]) for r in tsv(live, "fid")] == [128, 256]
    assert [float(r["fid"]) for r in tsv(live, "fid")] == pytest.approx([float(r["fid"]) for r in rows])
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [float(r["loss_g"]) for r in tsv(live, "loss_g")] == pytest.approx([s["loss_g"] for s in stats])
    grids = live / "plots" / "images" / "samples"
    assert sorted(int(p.stem) for p in grids.glob("*.png")) == steps
    assert (grids / "320.png").read_bytes() == (out / "samples" / "final.png").read_bytes()
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 320 and summary["fid"] == pytest.approx(float(rows[-1]["fid"]))
    assert not (live / "dvc.yaml").exists()  # dvc.yaml declares the plots; dvclive must not write its own
    assert not list((tmp_path / "b" / without.base.paths.live / "plots" / "metrics").glob("fid.tsv"))


def test_a_resumed_run_logs_the_same_steps_as_an_uninterrupted_one(tmp_path, one_thread):
    whole = train(tmp_path / "whole")
    train(tmp_path / "parts", "train.kimg=0.192")
    live = tmp_path / "parts" / whole.base.paths.live
    shutil.rmtree(live)  # as dvc repro does before it runs the stage again
    train(tmp_path / "parts")  # continues from the 0.192 kimg checkpoint

    expected = tsv(tmp_path / "whole" / whole.base.paths.live, "loss_d")
    resumed = tsv(live, "loss_d")
    assert [r["step"] for r in resumed] == [r["step"] for r in expected] == [str(64 * i) for i in range(1, 6)]
    assert [float(r["loss_d"]) for r in resumed] == [float(r["loss_d"]) for r in expected]  # bit-exact resume
    assert len(list((live / "plots" / "images" / "samples").glob("*.png"))) == 5

    # Nothing left to train (the run is at train.kimg): the log is still written, from the run's history.
    shutil.rmtree(live)
    train(tmp_path / "parts")
    assert [r["step"] for r in tsv(live, "loss_d")] == [r["step"] for r in expected]
