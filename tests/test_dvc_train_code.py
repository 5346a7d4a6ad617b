"""`dvc repro` after a code edit: a change to what training computes retrains, a comment does not."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import run

from ganlib.models.generator_file import load_generator

DCGAN = "ganlib/models/dcgan.py"
INIT = "nn.init.normal_(layer.weight, 0.0, 0.02)"


def repro_train(root: Path, env: dict) -> str:
    return run([str(Path(sys.executable).with_name("dvc")), "repro", "train"], root, env).stdout


def generator_weights(root: Path) -> dict[str, torch.Tensor]:
    generator, _ = load_generator(root / "runs/train/generator.pt", torch.device("cpu"))
    return {name: tensor.clone() for name, tensor in generator.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def dvc_status(root: Path, env: dict, stage: str) -> str:
    return run([str(Path(sys.executable).with_name("dvc")), "status", stage], root, env).stdout


def repro_train_log(root: Path, env: dict) -> str:
    result = run([str(Path(sys.executable).with_name("dvc")), "repro", "train"], root, env)
    return result.stdout + result.stderr


@pytest.mark.slow  # three dvc repro runs of a tiny training, on the tiny project as `dvc repro` left it
def test_code_edits_retrain_only_when_they_change_what_training_computes(reproduced_project, subprocess_env):
    root = reproduced_project
    trained = generator_weights(root)

    # The weights downloader is not run by the stage: no dep, no re-run.
    downloader = root / "ganlib/metrics/weights.py"
    downloader.write_text(downloader.read_text() + "\n# a comment in the download helper\n")
    assert "up to date" in dvc_status(root, subprocess_env, "train")

    # A comment in the loop is a new file to DVC (the stage re-runs), but the same run to training:
    # it resumes the finished checkpoint and writes the same generator.
    loop_file = root / "ganlib/training/loop.py"
    loop_file.write_text(loop_file.read_text() + "\n# a comment from a git pull\n")
    assert "changed" in dvc_status(root, subprocess_env, "train")
    log = repro_train_log(root, subprocess_env)
    assert "resuming from" in log and "starting from scratch" not in log
    assert same_weights(generator_weights(root), trained)

    # The same for a comment in a model file.
    model_file = root / DCGAN
    source = model_file.read_text()
    assert INIT in source
    model_file.write_text(source + "\n# a comment that changes nothing\n")
    assert "Running stage 'train'" in repro_train(root, subprocess_env)
    assert same_weights(generator_weights(root), trained)

    # A change to what the model computes must train again, not resume the old run.
    model_file.write_text(source.replace(INIT, INIT.replace("0.02", "0.03")))
    assert "Running stage 'train'" in repro_train(root, subprocess_env)
    assert not same_weights(generator_weights(root), trained)


@pytest.mark.slow  # two dvc repro runs of a tiny training, the first measuring precision
def test_deleting_the_speed_cache_resumes_rather_than_restarting(tiny_project, subprocess_env, tmp_path):
    from conftest import set_params

    cache = tmp_path / "speed-cache"
    env = {**subprocess_env, "SCENEGAN_CACHE_DIR": str(cache)}
    set_params(tiny_project / "params.yaml", ["train.precision=auto", "train.channels_last=auto"])
    first = repro_train_log(tiny_project, env)
    assert "measured" in first and any(cache.iterdir())
    shutil.rmtree(cache)

    set_params(tiny_project / "params.yaml", ["train.kimg=0.375"])  # continue the run: train must rerun
    second = repro_train_log(tiny_project, env)
    assert "as this run's checkpoints were made" in second and "resuming from" in second
    assert not cache.exists() or not any(cache.glob("speed-probe*.json")), "the probe measured again"
