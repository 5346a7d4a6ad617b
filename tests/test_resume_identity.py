"""Resuming across what changes in real life: the training code, the speed-probe cache.

A code change to what shapes the weights starts a new run by default, naming the
files; `train.resume: accept_code_change` continues on purpose and records both
digests. `precision: auto` is decided once per run: a run with checkpoints keeps
the precision they were made with, however the probe would decide today.
"""

from __future__ import annotations

import json
import logging

import pytest
from train_support import (  # noqa: F401 (one_thread: a fixture)
    assert_same_tensors,
    checkpoint_tensors,
    one_thread,
    smooth_images,
    tiny_params,
    write_prepared,
)

from ganlib.io.source import CodeDigest
from ganlib.training import loop
from ganlib.training.checkpoint import CheckpointError, list_checkpoints
from ganlib.training.loop import train_gan

LOG = logging.getLogger("test_resume_identity")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)

OLD_CODE = CodeDigest("a" * 64, {"ganlib/training/losses.py": "1", "ganlib/training/step.py": "1"})
NEW_CODE = CodeDigest("b" * 64, {"ganlib/training/losses.py": "2", "ganlib/training/step.py": "1"})


def train_with_code(monkeypatch, root, code: CodeDigest, *overrides: str, **kwargs):
    # The code digest is what a git pull changes; everything else is the real trainer.
    monkeypatch.setattr(loop, "training_code", lambda: code)
    params = tiny_params("train.kimg=0.128", *overrides)
    if not (root / params.base.paths.prepared).exists():
        write_prepared(root, params, smooth_images(48, 32))
    return params, train_gan(params, LOG, root, **kwargs)


def test_a_code_change_starts_a_new_run_and_names_the_changed_files(tmp_path, monkeypatch, caplog):
    _, first = train_with_code(monkeypatch, tmp_path, OLD_CODE)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        _, second = train_with_code(monkeypatch, tmp_path, NEW_CODE)
    assert second.resumed_from is None and second.run_dir != first.run_dir
    assert list_checkpoints(first.run_dir), "the old run's checkpoints are kept"
    said = caplog.text
    assert "ganlib/training/losses.py" in said and "step.py" not in said
    assert "train.resume: accept_code_change" in said


def test_accept_code_change_continues_and_records_both_digests(tmp_path, monkeypatch):
    params, first = train_with_code(monkeypatch, tmp_path, OLD_CODE)
    newest = list_checkpoints(first.run_dir)[-1]
    _, second = train_with_code(monkeypatch, tmp_path, NEW_CODE, "train.kimg=0.256",
                                "train.resume=accept_code_change")
    assert second.resumed_from == newest and second.run_dir != first.run_dir

    out = tmp_path / params.base.paths.train
    ticks = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [t["code_digest"] for t in ticks] == ["a" * 64] * 2 + ["b" * 64] * 2
    run = json.loads((out / "params.json").read_text())["run"]
    assert run["code_digest"] == "b" * 64
    [change] = run["code_changes"]
    assert change["files"] == ["ganlib/training/losses.py"]
    assert (change["from_code_digest"], change["to_code_digest"]) == ("a" * 64, "b" * 64)

    # The next rerun is the new code's own run: it resumes its own checkpoints, nothing else.
    _, third = train_with_code(monkeypatch, tmp_path, NEW_CODE, "train.kimg=0.256", "train.resume=accept_code_change")
    assert third.resumed_from == list_checkpoints(second.run_dir)[-1]


def test_an_explicit_checkpoint_of_other_code_is_refused_unless_accepted(tmp_path, monkeypatch):
    _, first = train_with_code(monkeypatch, tmp_path, OLD_CODE)
    checkpoint = list_checkpoints(first.run_dir)[-1]
    with pytest.raises(CheckpointError, match=r"(?s)losses\.py.*accept_code_change"):
        train_with_code(monkeypatch, tmp_path, NEW_CODE, "train.kimg=0.256", resume_from=checkpoint)
    _, accepted = train_with_code(monkeypatch, tmp_path, NEW_CODE, "train.kimg=0.256",
                                  "train.resume=accept_code_change", resume_from=checkpoint)
    assert accepted.resumed_from == checkpoint


def test_precision_auto_resumes_with_the_recorded_precision_without_asking_the_probe(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "machine-cache"
    monkeypatch.setenv("SCENEGAN_CACHE_DIR", str(cache))
    auto = ("train.precision=auto", "train.channels_last=auto")
    params, first = train_with_code(monkeypatch, tmp_path, OLD_CODE, *auto)
    chosen = json.loads((tmp_path / params.base.paths.train / "params.json").read_text())["train"]["precision"]
    assert chosen in ("fp32", "bf16") and any(cache.iterdir())

    newest = list_checkpoints(first.run_dir)[-1]
    # The cache is gone (or would now say otherwise): the run's own record decides.
    for path in cache.iterdir():
        path.unlink()

    def probe_must_not_run(*args, **kwargs):
        raise AssertionError("the speed probe was asked for a run that has checkpoints")

    monkeypatch.setattr(loop, "resolve_train_speed", probe_must_not_run)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        _, second = train_with_code(monkeypatch, tmp_path, OLD_CODE, *auto, "train.kimg=0.256")
    assert second.resumed_from == newest and second.run_dir == first.run_dir
    assert json.loads((tmp_path / params.base.paths.train / "params.json").read_text())["train"]["precision"] == chosen
    assert "as this run's checkpoints were made" in caplog.text

    # A fresh run (train.resume: fresh) is the only kind that asks the probe again.
    with pytest.raises(AssertionError, match="speed probe was asked"):
        train_with_code(monkeypatch, tmp_path, OLD_CODE, *auto, "train.resume=fresh")


def test_a_truncated_newest_checkpoint_is_set_aside_and_the_one_before_it_resumed(tmp_path, monkeypatch, caplog):
    params, straight = train_with_code(monkeypatch, tmp_path / "straight", OLD_CODE, "train.kimg=0.256")
    _, first = train_with_code(monkeypatch, tmp_path, OLD_CODE, "train.kimg=0.192")
    older, newest = list_checkpoints(first.run_dir)[-2:]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a full disk, a copy cut short

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        _, resumed = train_with_code(monkeypatch, tmp_path, OLD_CODE, "train.kimg=0.256")
    assert resumed.resumed_from == older
    assert newest.name in caplog.text and ".corrupt" in caplog.text
    assert newest.with_name(newest.name + ".corrupt").is_file()  # kept for a post-mortem, not deleted
    # ...and the run it continued is the uninterrupted one, bit for bit.
    final = [checkpoint_tensors(list_checkpoints(run.run_dir)[-1])["networks"] for run in (straight, resumed)]
    assert_same_tensors(final[0], final[1])


def test_an_unreadable_checkpoint_asked_for_by_name_is_an_error(tmp_path, monkeypatch):
    _, first = train_with_code(monkeypatch, tmp_path, OLD_CODE)
    newest = list_checkpoints(first.run_dir)[-1]
    newest.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        train_with_code(monkeypatch, tmp_path, OLD_CODE, "train.kimg=0.256", resume_from=newest)
    assert newest.is_file()  # named by the user: left where it is


def test_a_run_whose_losses_explode_but_stay_finite_is_stopped_and_not_published(tmp_path, monkeypatch):
    """The issue's case: lr 1e6, loss_d ~0 and loss_g ~1e14, all finite."""
    from ganlib.training.loop import DivergedError

    params = tiny_params("train.lr_g=1000000.0", "train.lr_d=1000000.0")
    with pytest.raises(DivergedError, match=r"diverged .*beyond .* for 3 ticks in a row"):
        train_with_code(monkeypatch, tmp_path, OLD_CODE, "train.lr_g=1000000.0", "train.lr_d=1000000.0",
                        "train.kimg=0.32")
    assert not (tmp_path / params.base.paths.train / "generator.pt").exists()


def test_the_divergence_bound_depends_on_the_loss():
    from ganlib.training.divergence import diverged_loss

    assert diverged_loss({"loss_d": 0.0, "loss_g": 2.4e14}, "bce").startswith("loss_g")
    assert diverged_loss({"loss_d": 0.7, "loss_g": 5.0}, "hinge") is None
    assert diverged_loss({"loss_d": -3e4, "loss_g": 3e4}, "wgan-gp") is None  # a critic's scale is not bounded
    assert diverged_loss({"loss_d": -3e7, "loss_g": 3e7}, "wgan-gp").startswith("loss_d")


def test_another_thread_count_resumes_the_same_run(tmp_path, monkeypatch):
    """Threads are not part of a run (on a CPU the continuation then equals the uninterrupted
    run only to rounding: ganlib/training/throughput.py says why)."""
    import torch

    _, first = train_with_code(monkeypatch, tmp_path, OLD_CODE)
    newest = list_checkpoints(first.run_dir)[-1]
    torch.set_num_threads(2)  # the one_thread fixture restores the count afterwards
    _, resumed = train_with_code(monkeypatch, tmp_path, OLD_CODE, "train.kimg=0.256")
    assert resumed.resumed_from == newest and resumed.run_dir == first.run_dir
