"""`train.precision: auto`: measured once per machine, recorded, and part of the run's identity."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from train_support import one_thread, smooth_images, tiny_params, write_prepared

from ganlib.hardware.machine import describe_machine
from ganlib.hardware.probe import probed_choice, speed_candidates
from ganlib.training import speed as train_speed
from ganlib.training.loop import train_gan
from ganlib.training.speed import resolve_train_speed, workload_key

LOG = logging.getLogger("test_train_speed")
CPU = torch.device("cpu")
AUTO = ("train.precision=auto", "train.channels_last=auto")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def seed_choice(cache_dir, params, choice: str) -> None:
    """Put a measured choice in the machine cache, as an earlier probe on this machine would have."""
    machine = describe_machine(CPU)
    names = sorted(speed_candidates("auto", "auto"))
    key = workload_key(params.train, 32, names)
    probed_choice(cache_dir, machine.describe(), machine.cache_key(), key,
                  lambda: {name: (0.5 if name == choice else 1.0) for name in names}, prefer="fp32", margin=0.1)


def test_explicit_settings_win_and_nothing_is_measured(tmp_path):
    cfg = tiny_params("train.precision=bf16", "train.channels_last=false").train
    speed = resolve_train_speed(cfg, 32, CPU, 0, tmp_path)
    assert (speed.precision, speed.channels_last, speed.probe) == ("bf16", False, None)
    assert not list(tmp_path.iterdir())  # no probe ran, nothing cached


def test_auto_measures_once_then_reuses_the_choice(tmp_path):
    cfg = tiny_params(*AUTO).train
    first = resolve_train_speed(cfg, 32, CPU, 0, tmp_path)
    again = resolve_train_speed(cfg, 32, CPU, 0, tmp_path)
    assert first.precision in ("fp32", "bf16") and isinstance(first.channels_last, bool)
    assert not first.probe.cached and again.probe.cached
    assert (again.precision, again.channels_last) == (first.precision, first.channels_last)
    assert set(first.probe.seconds) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    # An explicit precision still lets the layout be measured, among that precision's candidates only.
    fp32_only = resolve_train_speed(tiny_params("train.precision=fp32", "train.channels_last=auto").train, 32, CPU, 0, tmp_path)
    assert fp32_only.precision == "fp32" and set(fp32_only.probe.seconds) == {"fp32", "fp32+channels_last"}


def test_a_two_process_run_takes_the_choice_a_one_process_run_measured(tmp_path, monkeypatch):
    """torchrun starts each `train.nproc: 2` process with OMP_NUM_THREADS=1: that is no reason to
    measure again on this machine, and a new measurement could choose another precision (another run)."""
    cfg = tiny_params(*AUTO).train
    figures = {"fp32": 1.0, "fp32+channels_last": 1.1, "bf16": 0.4, "bf16+channels_last": 0.5}
    monkeypatch.setattr(train_speed, "_time_settings", lambda *args: dict(figures))
    torch.set_num_threads(2)  # the 1-process run (one_thread restores the count afterwards)
    single = resolve_train_speed(cfg, 32, CPU, 0, tmp_path)
    assert (single.precision, single.channels_last, single.probe.cached) == ("bf16", False, False)

    # Rank 0 of the 2-process run, as torchrun starts it.
    for name, value in dict(OMP_NUM_THREADS="1", WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(name, value)
    torch.set_num_threads(1)

    def never_measure(*args):
        raise AssertionError("the 2-process run measured again")

    monkeypatch.setattr(train_speed, "_time_settings", never_measure)
    rank0 = resolve_train_speed(cfg, 32, CPU, 0, tmp_path)
    assert rank0.probe.cached and (rank0.precision, rank0.channels_last) == ("bf16", False)
    assert "2 torch threads" in rank0.probe.machine  # the log says where the choice was measured


def test_the_chosen_precision_is_logged_recorded_and_kept_by_the_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SCENEGAN_CACHE_DIR", str(tmp_path / "machine"))
    root = tmp_path / "project"
    write_prepared(root, tiny_params(), smooth_images(160, 32))
    params = tiny_params(*AUTO, "train.kimg=0.064")

    seed_choice(tmp_path / "machine", params, "bf16")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        bf16_run = train_gan(params, LOG, root)
    assert "precision bf16" in caplog.text and "measurement" in caplog.text
    out = root / params.base.paths.train
    assert json.loads((out / "stats.jsonl").read_text().splitlines()[-1])["speed"]["precision"] == "bf16"
    assert json.loads((out / "params.json").read_text())["train"]["precision"] == "bf16"

    # The cache now says fp32 (deleted, re-measured on a noisy machine): the run has checkpoints,
    # so it continues in the precision they were made with; it never resumes bf16 checkpoints in fp32.
    (tmp_path / "machine" / "speed-probe.json").unlink()
    seed_choice(tmp_path / "machine", params, "fp32")
    again = train_gan(tiny_params(*AUTO, "train.kimg=0.128"), LOG, root)
    assert again.run_dir == bf16_run.run_dir and again.resumed_from is not None
    assert json.loads((out / "params.json").read_text())["train"]["precision"] == "bf16"
    # An explicit fp32 is another run: its own directory, from scratch...
    explicit = train_gan(tiny_params("train.precision=fp32", "train.channels_last=false", "train.kimg=0.064"), LOG, root)
    assert explicit.run_dir != bf16_run.run_dir and explicit.resumed_from is None
    # ...and `auto` continues the newest run these params match, now that fp32 one.
    continued = train_gan(tiny_params(*AUTO, "train.kimg=0.128"), LOG, root)
    assert continued.run_dir == explicit.run_dir and continued.resumed_from is not None
