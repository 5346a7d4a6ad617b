"""`dvc repro` after a code edit: a change to what training computes retrains, a comment does not."""

from __future__ import annotations

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


@pytest.mark.slow  # three dvc repro runs of a tiny training: about a minute on 2 cores
def test_editing_a_model_retrains_and_a_comment_resumes(tiny_project, subprocess_env):
    assert "Running stage 'train'" in repro_train(tiny_project, subprocess_env)
    trained = generator_weights(tiny_project)
    model_file = tiny_project / DCGAN
    source = model_file.read_text()
    assert INIT in source

    # A comment is a code change to DVC (the stage re-runs), but not to the run: it resumes
    # the finished checkpoint and writes the same generator.
    model_file.write_text(source + "\n# a comment that changes nothing\n")
    assert "Running stage 'train'" in repro_train(tiny_project, subprocess_env)
    assert same_weights(generator_weights(tiny_project), trained)

    # A change to what the model computes must train again, not resume the old run.
    model_file.write_text(source.replace(INIT, INIT.replace("0.02", "0.03")))
    assert "Running stage 'train'" in repro_train(tiny_project, subprocess_env)
    assert not same_weights(generator_weights(tiny_project), trained)
