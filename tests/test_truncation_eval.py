"""The truncation table (ganlib/metrics/truncation_table.py): scores per psi, on exactly psi times the eval latents."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from test_metrics_support import TinyGenerator, TinyInfo, project, smooth_images, tiny_params, write_prepared_dataset

from ganlib.config import ParamsError
from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import evaluate_generator, measure_generator, score_generator, write_evaluation
from ganlib.metrics.truncation_table import TRUNCATION_FORMAT, table_psis
from ganlib.models.sampling import fixed_latents

LOG = plain_logger("scenegan-tests")
SWEEP = ("evaluate.metrics=[fid,kid,prdc]", "evaluate.prdc_k=3", "evaluate.fid_bootstrap=0")


class LatentRecorder(nn.Module):
    """TinyGenerator that remembers every latent batch it was given."""

    def __init__(self):
        super().__init__()
        self.inner = TinyGenerator()
        self.seen: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(z.detach().clone())
        return self.inner(z)


def test_each_psi_row_is_scored_on_psi_times_the_evaluation_latents(tmp_path):
    root = project(tmp_path)
    params = tiny_params(*SWEEP, "evaluate.truncation=[0.5,1.0,0.5]")
    generator = LatentRecorder()
    evaluation = measure_generator(generator, TinyInfo(), params, LOG, root)

    latents = fixed_latents(params.evaluate.n_samples, TinyInfo.z_dim, params.evaluate.seed)
    main_pass, truncated_pass = torch.cat(generator.seen[:3]), torch.cat(generator.seen[3:])  # 40 in batches of 16
    assert torch.equal(main_pass, latents) and torch.equal(truncated_pass, 0.5 * latents)

    report = evaluation.report
    untruncated, half = evaluation.truncation
    assert (untruncated.psi, half.psi) == (1.0, 0.5)             # 1.0 first, each psi once
    assert (untruncated.fid, untruncated.kid_mean, untruncated.precision, untruncated.recall,
            untruncated.density, untruncated.coverage) == (report.fid, report.kid_mean, report.precision,
                                                           report.recall, report.density, report.coverage)
    assert half.fid != report.fid and half.kid_mean is not None and half.coverage is not None

    out = tmp_path / params.base.paths.evaluate
    write_evaluation(evaluation, params, out)
    record = json.loads((out / "truncation.json").read_text())
    assert record["format"] == TRUNCATION_FORMAT
    assert (record["n_samples"], record["seed"], record["z_dim"], record["prdc_k"]) == (40, 12345, TinyInfo.z_dim, 3)
    assert [row["psi"] for row in record["rows"]] == [1.0, 0.5]
    assert set(record["rows"][0]) == {"psi", "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"}
    assert record["rows"][0]["fid"] == json.loads((out / "metrics.json").read_text())["fid"]


def test_score_generator_makes_no_truncated_samples_and_the_default_table_is_one_row(tmp_path):
    root = project(tmp_path)
    generator = LatentRecorder()
    score_generator(generator, TinyInfo(), tiny_params(*SWEEP, "evaluate.truncation=[1.0,0.7]"), LOG, root)
    assert len(generator.seen) == 3                            # the main pass only

    evaluation = measure_generator(TinyGenerator(), TinyInfo(), tiny_params(*SWEEP, "evaluate.metrics=[kid]"), LOG, root)
    [row] = evaluation.truncation
    assert row.psi == 1.0 and row.kid_mean == evaluation.report.kid_mean and row.fid is None and row.precision is None


def test_the_evaluate_stage_prints_the_table_and_writes_every_file(tmp_path, caplog):
    from ganlib.data.dataset import open_prepared
    from ganlib.models.generator_file import GeneratorInfo, save_generator
    from ganlib.models.registry import build_generator, generator_kwargs

    params = tiny_params(*SWEEP, "evaluate.truncation=[1.0,0.6]", "train.arch=dcgan", "train.z_dim=16",
                         "train.g_width=4", "evaluate.n_samples=24")
    write_prepared_dataset(tmp_path / params.base.paths.prepared, smooth_images(24, seed=4, resolution=32))
    dataset = open_prepared(tmp_path / params.base.paths.prepared)
    torch.manual_seed(0)
    info = GeneratorInfo("dcgan", 16, 32, 7.5, dataset.data_md5, dataset.content_hash, "f" * 16)
    save_generator(tmp_path / params.base.paths.train / "generator.pt", build_generator(params.train, 32), info,
                   generator_kwargs(params.train, 32))

    with caplog.at_level("INFO", logger=LOG.name):
        LOG.propagate = True
        try:
            evaluate_generator(params, LOG, tmp_path)
        finally:
            LOG.propagate = False
    assert "truncation (quality/diversity trade-off; psi 1.0 is the evaluation above" in caplog.text
    assert "psi  FID" in caplog.text and "\n0.6  " in caplog.text
    out = tmp_path / params.base.paths.evaluate
    assert sorted(p.name for p in out.iterdir()) == [
        "evaluation.json", "memorisation.json", "metrics.json", "params.json", "scores", "truncation.json"]


def test_psi_outside_zero_to_one_is_refused_naming_the_key():
    assert table_psis([0.6, 1.0, 0.8, 0.6]) == [1.0, 0.8, 0.6]
    for bad in ("[1.0,0]", "[1.5]", "[]"):
        with pytest.raises(ParamsError, match=r"evaluate\.truncation"):
            tiny_params(f"evaluate.truncation={bad}")
