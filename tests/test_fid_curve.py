"""The FID curve written during training: one point per due tick, published with the
outputs, and measuring it does not change what is trained."""

from __future__ import annotations

import csv

import torch
from train_support import one_thread, smooth_images, tiny_params, write_prepared  # noqa: F401

from ganlib.logs import plain_logger
from ganlib.stages.train import with_fid_curve
from ganlib.training.loop import train_gan

LOG = plain_logger("scenegan-tests")
CURVE = ("evaluate.extractor=tiny-random-conv", "evaluate.during_training.n_samples=16", "evaluate.kid_subset_size=8")


def train(root, *overrides):
    params = tiny_params(*CURVE, *overrides)
    write_prepared(root, params, smooth_images(64, 32))
    train_gan(params, LOG, root, on_tick=with_fid_curve(params, LOG, root))
    return params


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
