"""The CUDA path: one training tick, a resume and an evaluation on a GPU. Skipped without CUDA.

Run on a lent GPU machine by ../shared/gpu-check.sh (`pytest -m gpu`).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from train_support import smooth_images, tiny_params, write_prepared

from ganlib.models.generator_file import load_generator
from ganlib.training.loop import train_gan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
LOG = logging.getLogger("test_gpu")
CUDA = ("base.device=cuda", "train.precision=auto", "train.channels_last=auto", "train.data_on_device=true")


def prepared(tmp_path):
    write_prepared(tmp_path, tiny_params(), smooth_images(160, 32))
    return tmp_path


def test_one_training_tick_on_cuda_with_the_auto_precision(tmp_path):
    root = prepared(tmp_path)
    params = tiny_params(*CUDA, "train.kimg=0.064")
    summary = train_gan(params, LOG, root)
    stats = [json.loads(line) for line in (root / params.base.paths.train / "stats.jsonl").read_text().splitlines()]
    assert summary.ticks == 1 and np.isfinite([stats[-1]["loss_d"], stats[-1]["loss_g"]]).all()
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert stats[-1]["speed"]["precision"] == expected
    generator, info = load_generator(summary.generator_path, torch.device("cuda"))
    with torch.no_grad():
        images = generator(torch.randn(4, info.z_dim, device="cuda"))
    assert images.is_cuda and torch.isfinite(images).all()


def test_resume_on_cuda_continues_the_run(tmp_path):
    root = prepared(tmp_path)
    first = train_gan(tiny_params(*CUDA, "train.kimg=0.128"), LOG, root)
    second = train_gan(tiny_params(*CUDA, "train.kimg=0.192"), LOG, root)
    assert first.run_dir == second.run_dir  # the same run identity, continued
    assert second.resumed_from is not None and second.kimg == pytest.approx(0.192)


def test_evaluation_on_cuda(tmp_path):
    from ganlib.metrics.evaluate import evaluate_generator

    root = prepared(tmp_path)
    params = tiny_params(*CUDA, "train.kimg=0.064", "evaluate.device=cuda", "evaluate.extractor=tiny-random-conv",
                         "evaluate.metrics=[fid,kid]", "evaluate.n_samples=64", "evaluate.kid_subset_size=32")
    train_gan(params, LOG, root)
    report = evaluate_generator(params, LOG, root)
    assert np.isfinite(report.fid) and report.fid >= 0
