"""Data parallel training: two gloo processes on CPU compute the same step as one process.

BatchNorm statistics are per microbatch, so "the same step" means: two processes
with one microbatch of 8 each == one process with two microbatches of 8 (the
combined batch of 16, accumulated). A single forward pass over all 16 would
normalise over 16 images and is a different computation; see ganlib/training/distributed.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import REPO_ROOT
from train_support import TINY_TRAIN, checkpoint_tensors, one_thread, smooth_images, tiny_params, write_labels, write_prepared

from ganlib.errors import UserFacingError
from ganlib.training.checkpoint import list_checkpoints
from ganlib.training.distributed import process_group_options
from ganlib.training.launch import torchrun_command
from ganlib.training.loop import TrainSummary, train_gan
from ganlib.training.step import build_networks

LOG = logging.getLogger("test_distributed")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)

# One optimiser step of a global batch of 16, with augmentation so that every random draw is covered.
# No R1: the config refuses it with DCGAN's batch-normalised discriminator, and the ResNet that takes
# it updates spectral norm's power iteration once per forward pass, i.e. per microbatch, so its
# result depends on how many microbatches each process runs.
ONE_STEP = (*TINY_TRAIN, "train.kimg=0.016", "train.tick_kimg=0.016", "train.microbatch=8",
            "train.diffaugment=[color,translation,cutout]")


@pytest.mark.parametrize("classes", [(), ("day", "night", "fog")], ids=["unconditional", "conditional"])
def test_two_gloo_processes_match_one_process_on_the_combined_batch(tmp_path, classes):
    images = smooth_images(64, 32)
    single_root, parallel_root = tmp_path / "single", tmp_path / "parallel"
    for root in (single_root, parallel_root):
        prepared = write_prepared(root, tiny_params(), images)
        if classes:  # each process takes its microbatch's labels with its images
            write_labels(prepared, np.arange(64) % len(classes), classes)

    single = train_gan(tiny_params(*ONE_STEP, "train.nproc=1"), LOG, single_root)

    overrides = [*ONE_STEP, "train.nproc=2"]
    command = torchrun_command(2, REPO_ROOT / "params.yaml", parallel_root, overrides)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    assert_same_step_as(single, parallel_root, len(classes))


def assert_same_step_as(single: TrainSummary, parallel_root: Path, n_classes: int = 0) -> None:
    """The run under `parallel_root` is `single`'s run (same identity) and took the same step."""
    run_dirs = list((parallel_root / "runs" / "checkpoints").iterdir())
    assert [d.name for d in run_dirs] == [single.run_dir.name]  # the process layout does not change a run's identity
    expected = checkpoint_tensors(list_checkpoints(single.run_dir)[-1])
    got = checkpoint_tensors(list_checkpoints(run_dirs[0])[-1])
    assert got["progress"]["step"] == expected["progress"]["step"] == 1
    for net in ("G", "D", "G_ema"):
        for name, tensor in expected["networks"][net].items():
            if tensor.is_floating_point() and "running" not in name:  # BN running stats are per process
                torch.testing.assert_close(got["networks"][net][name], tensor, rtol=1e-5, atol=1e-7, msg=f"{net}.{name}")
    # The step really moved the weights (so the comparison is not between two initialisations).
    initial = build_networks(tiny_params(*ONE_STEP).train, 32, torch.device("cpu"), seed=0, n_classes=n_classes)
    assert not torch.equal(initial.G.state_dict()["main.0.weight"], expected["networks"]["G"]["main.0.weight"])


def test_launch_mismatch_is_explained(tmp_path):
    write_prepared(tmp_path, tiny_params(), smooth_images(8, 32))
    with pytest.raises(UserFacingError, match=r"train\.nproc is 2 .* torchrun"):
        train_gan(tiny_params("train.nproc=2", "train.microbatch=8"), LOG, tmp_path)


def test_process_group_timeout_is_explicit_and_outlasts_the_backend_defaults():
    # Rank 0's upkeep (checkpoint, grid, FID curve) keeps the others waiting in a barrier; NCCL's own
    # default (10 minutes) would fail a run whose FID measurement takes longer.
    cuda, cpu = process_group_options(torch.device("cuda", 0)), process_group_options(torch.device("cpu"))
    assert (cuda["backend"], cpu["backend"]) == ("nccl", "gloo")
    for options in (cuda, cpu):
        assert options["timeout"] >= max(dist.constants.default_pg_nccl_timeout, dist.constants.default_pg_timeout)


def test_auto_precision_is_measured_once_and_shared_by_every_process(tmp_path):
    """Rank 0 measures (the others wait for its choice): the processes cannot train in different precisions."""
    write_prepared(tmp_path, tiny_params(), smooth_images(64, 32))
    overrides = [*ONE_STEP, "train.nproc=2", "train.precision=auto", "train.channels_last=auto"]
    command = torchrun_command(2, REPO_ROOT / "params.yaml", tmp_path, overrides)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", SCENEGAN_CACHE_DIR=str(tmp_path / "machine"))
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    stats = (tmp_path / "runs" / "train" / "stats.jsonl").read_text().splitlines()
    speed = json.loads(stats[-1])["speed"]
    assert speed["precision"] in ("fp32", "bf16") and speed["probe"]["cached"] is False
    assert len(json.loads((tmp_path / "machine" / "speed-probe.json").read_text())["entries"]) == 1
