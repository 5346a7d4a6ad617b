"""The training loop: outputs, bit-exact resume (also after SIGKILL), refusals, the NaN guard."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from train_support import (
    TINY_TRAIN,
    assert_same_tensors,
    checkpoint_tensors,
    one_thread,
    smooth_images,
    tiny_params,
    write_prepared,
)

from ganlib.models.registry import ArchitectureError, build_generator
from ganlib.models.generator_file import load_generator
from ganlib.training.checkpoint import CheckpointError, list_checkpoints
from ganlib.training.ema import recalibration_latents
from ganlib.training.loop import NonFiniteLossError, train_gan

LOG = logging.getLogger("test_training")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def prepared_root(tmp_path: Path, name: str, count: int = 160, resolution: int = 32, seed: int = 0) -> Path:
    root = tmp_path / name
    write_prepared(root, tiny_params(), smooth_images(count, resolution, seed))
    return root


def final_checkpoint(summary) -> dict:
    return checkpoint_tensors(list_checkpoints(summary.run_dir)[-1])["networks"]


def test_outputs_are_complete_and_loadable(tmp_path):
    root = prepared_root(tmp_path, "run")
    # R1 needs a discriminator without BatchNorm: the ResNet (the config refuses R1 with DCGAN).
    params = tiny_params("train.kimg=0.192", "train.keep_last=2", "train.diffaugment=[color,translation,cutout]",
                         "train.arch=resnet", "train.r1_gamma=1.0", "train.r1_interval=4")
    summary = train_gan(params, LOG, root)

    out = root / params.base.paths.train
    assert summary.kimg == pytest.approx(0.192) and summary.ticks == 3 and summary.resumed_from is None
    generator, info = load_generator(out / "generator.pt", torch.device("cpu"))
    assert (info.arch, info.resolution, info.z_dim, info.kimg) == ("resnet", 32, 16, pytest.approx(0.192))
    with torch.no_grad():
        images = generator(torch.randn(2, 16))
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1

    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == pytest.approx([0.064, 0.128, 0.192])
    for record in stats:
        assert {"loss_d", "loss_g", "penalty", "img_per_s", "eta_s", "diversity", "diversity_ratio"} <= set(record)
        assert np.isfinite([record["loss_d"], record["loss_g"], record["diversity"]]).all()
        assert (out / record["grid"]).is_file()
    assert stats[-1]["penalty"] > 0  # R1 ran
    assert (out / "samples" / "final.png").read_bytes() == (out / stats[-1]["grid"]).read_bytes()
    assert json.loads((out / "params.json").read_text())["train"]["kimg"] == 0.192

    checkpoints = list_checkpoints(summary.run_dir)
    assert [p.name for p in checkpoints] == ["ckpt-000000000128.pt", "ckpt-000000000192.pt"]  # keep_last=2
    assert checkpoint_tensors(checkpoints[-1])["nimg"] == 192  # loads with weights_only=True


def test_same_seed_same_weights_and_longer_kimg_continues_bit_for_bit(tmp_path):
    straight = train_gan(tiny_params("train.kimg=0.192"), LOG, prepared_root(tmp_path, "straight"))

    root = prepared_root(tmp_path, "extended")
    first = train_gan(tiny_params("train.kimg=0.096"), LOG, root)
    end_of_first = list_checkpoints(first.run_dir)[-1]
    second = train_gan(tiny_params("train.kimg=0.192"), LOG, root)
    assert second.run_dir == first.run_dir and second.resumed_from == end_of_first
    assert second.steps == straight.steps == 12
    assert_same_tensors(final_checkpoint(second), final_checkpoint(straight), keys=("G", "D", "G_ema", "opt_g", "opt_d"))

    # Nothing left to do: a rerun publishes the same generator without training.
    again = train_gan(tiny_params("train.kimg=0.192"), LOG, root)
    assert again.steps == 12 and again.resumed_from is not None
    # A shorter run than the checkpoints already hold is not silently replaced by a longer one.
    with pytest.raises(CheckpointError, match=r"already at 0\.192 kimg, beyond train\.kimg \(0\.096\); raise train\.kimg"):
        train_gan(tiny_params("train.kimg=0.096"), LOG, root)


def batchnorm_statistics_of_own_activations(generator: torch.nn.Module, latents: torch.Tensor, batch_size: int) -> dict:
    """{BatchNorm name: (mean, var)}: the average over batches of each layer's batch statistics while
    `generator` runs in train mode on `latents` (what its running statistics should hold)."""
    inputs: dict[str, list[torch.Tensor]] = {}
    for name, module in generator.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            inputs[name] = []
            module.register_forward_hook(lambda m, args, out, name=name: inputs[name].append(args[0].detach()))
    generator.train()
    with torch.no_grad():
        for z in latents.split(batch_size):
            generator(z)
    return {
        name: (torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0),
               torch.stack([x.var((0, 2, 3), unbiased=True) for x in batches]).mean(0))
        for name, batches in inputs.items()
    }


def test_ema_generator_batchnorm_statistics_are_its_own(tmp_path):
    params = tiny_params("train.kimg=0.064", "train.microbatch=8")
    summary = train_gan(params, LOG, prepared_root(tmp_path, "run"))
    saved = final_checkpoint(summary)
    g_ema = build_generator(params.train, 32)
    g_ema.load_state_dict(saved["G_ema"])
    expected = batchnorm_statistics_of_own_activations(
        g_ema, recalibration_latents(params.train.z_dim, params.base.seed), params.train.microbatch)
    assert len(expected) == 3
    for name, (mean, var) in expected.items():
        torch.testing.assert_close(saved["G_ema"][f"{name}.running_mean"], mean, msg=lambda m: f"{name}: {m}")
        torch.testing.assert_close(saved["G_ema"][f"{name}.running_var"], var, msg=lambda m: f"{name}: {m}")
        # ... and not the raw generator's, which describe other weights' activations.
        assert not torch.allclose(saved["G_ema"][f"{name}.running_mean"], saved["G"][f"{name}.running_mean"])
    # The published generator carries the same statistics.
    published = torch.load(summary.generator_path, weights_only=True)["state_dict"]
    assert_same_tensors({"G_ema": published}, {"G_ema": saved["G_ema"]}, keys=("G_ema",))


def run_training_subprocess(root: Path, overrides: tuple[str, ...]) -> subprocess.Popen:
    command = [sys.executable, "-m", "ganlib.stages.train", "--params", str(REPO_ROOT / "params.yaml"), "--root", str(root)]
    for expression in overrides:
        command += ["--set", expression]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")  # as the in-process reference
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    overrides = (*TINY_TRAIN, "train.kimg=0.96", "train.tick_kimg=0.032")  # 60 steps, a checkpoint every 2
    params = tiny_params(*overrides)

    killed_root = prepared_root(tmp_path, "killed")
    run_dir_parent = killed_root / params.base.paths.checkpoints
    process = run_training_subprocess(killed_root, overrides)
    deadline = time.monotonic() + 120
    while not any(run_dir_parent.glob("*/ckpt-*.pt")):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (killed_root / params.base.paths.train / "generator.pt").exists()  # nothing half-published
    (run_dir,) = run_dir_parent.iterdir()
    interrupted_at = list_checkpoints(run_dir)[-1].name
    assert interrupted_at != "ckpt-000000000960.pt"

    resumed = run_training_subprocess(killed_root, overrides)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"resuming from {run_dir / interrupted_at}" in output

    reference = train_gan(params, LOG, prepared_root(tmp_path, "uninterrupted"))
    assert_same_tensors(final_checkpoint(reference), checkpoint_tensors(list_checkpoints(run_dir)[-1])["networks"],
                        keys=("G", "D", "G_ema", "opt_g", "opt_d"))
    resumed_g = torch.load(killed_root / params.base.paths.train / "generator.pt", weights_only=True)
    reference_g = torch.load(reference.generator_path, weights_only=True)
    assert_same_tensors({"G": resumed_g["state_dict"]}, {"G": reference_g["state_dict"]}, keys=("G",))


def test_r3gan_rpgan_r1_r2_cosine_run_resumes_bit_for_bit(tmp_path):
    # The R3GAN recipe through the whole loop: a run whose last checkpoint is lost resumes from the one
    # before and ends where the uninterrupted run did (the cosine schedule follows the step counter).
    params = tiny_params("train.arch=r3gan", "train.loss=rpgan", "train.r1_gamma=0.5", "train.r2_gamma=0.5",
                         "train.r1_interval=2", "train.g_width=4", "train.d_width=4", "train.kimg=0.128",
                         "train.schedule=cosine", "train.lr_end_fraction=0.25", "train.beta2_end=0.99",
                         "train.gamma_end_fraction=0.5", "train.ema_halflife_end_kimg=0.1")
    reference = train_gan(params, LOG, prepared_root(tmp_path, "straight"))

    root = prepared_root(tmp_path, "interrupted")
    first = train_gan(params, LOG, root)
    *earlier, last = list_checkpoints(first.run_dir)
    last.unlink()
    (root / params.base.paths.train / "generator.pt").unlink()
    resumed = train_gan(params, LOG, root)
    assert resumed.resumed_from == earlier[-1] and resumed.steps == reference.steps == 8
    assert_same_tensors(final_checkpoint(resumed), final_checkpoint(reference), keys=("G", "D", "G_ema", "opt_g", "opt_d"))
    generator, info = load_generator(resumed.generator_path, torch.device("cpu"))
    assert info.arch == "r3gan"
    stats = [json.loads(line) for line in (root / params.base.paths.train / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["penalty"] > 0 and np.isfinite([stats[-1]["loss_d"], stats[-1]["loss_g"]]).all()


def test_resume_refuses_other_params_or_data_naming_the_keys(tmp_path):
    root = prepared_root(tmp_path, "run")
    first = train_gan(tiny_params("train.kimg=0.064"), LOG, root)
    checkpoint = list_checkpoints(first.run_dir)[-1]

    with pytest.raises(CheckpointError) as refused:
        train_gan(tiny_params("train.kimg=0.128", "train.lr_g=0.001", "train.loss=hinge"), LOG, root, resume_from=checkpoint)
    message = str(refused.value)
    assert str(checkpoint) in message and "train.lr_g: 0.0002 -> 0.001" in message
    assert 'train.loss: "bce" -> "hinge"' in message and "train.resume: fresh" in message
    assert "train.kimg" not in message  # length is not part of a run's identity

    other_data = prepared_root(tmp_path, "other", seed=1)
    with pytest.raises(CheckpointError, match=r"dataset\.sha256: "):
        train_gan(tiny_params("train.kimg=0.128"), LOG, other_data, resume_from=checkpoint)

    # Automatic resume never mixes runs: other params train in their own directory, the old one is kept.
    changed = train_gan(tiny_params("train.kimg=0.064", "train.lr_g=0.001"), LOG, root)
    assert changed.run_dir != first.run_dir and changed.resumed_from is None
    assert list_checkpoints(first.run_dir) == [checkpoint]


def test_fresh_start_keeps_earlier_checkpoints_aside(tmp_path):
    root = prepared_root(tmp_path, "run")
    first = train_gan(tiny_params("train.kimg=0.064"), LOG, root)
    fresh = train_gan(tiny_params("train.kimg=0.064", "train.resume=fresh"), LOG, root)
    assert fresh.resumed_from is None and fresh.run_dir == first.run_dir
    aside = first.run_dir.with_name(first.run_dir.name + ".superseded-1")
    assert [p.name for p in list_checkpoints(aside)] == ["ckpt-000000000064.pt"]


@pytest.mark.parametrize("check_every", [1, 16])
def test_nonfinite_loss_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path, check_every):
    root = prepared_root(tmp_path, "run")
    # An absurd R1 weight: the first R1 step (every 8th D step: step 7) overflows; ticks every 4 steps.
    # Checked every step or only every 16 (then at the tick before the next checkpoint), the report is the same.
    params = tiny_params("train.arch=resnet", "train.r1_gamma=1e300", "train.r1_interval=8",
                         f"train.check_finite_every={check_every}")
    with pytest.raises(NonFiniteLossError) as stopped:
        train_gan(params, LOG, root)
    run_dir = next((root / params.base.paths.checkpoints).iterdir())
    checkpoints = list_checkpoints(run_dir)
    assert [p.name for p in checkpoints] == ["ckpt-000000000064.pt"]
    message = str(stopped.value)
    assert "non-finite discriminator loss at step 7 (kimg 0.128)" in message
    assert f"last good checkpoint: {checkpoints[0]}" in message and "train.r1_gamma" in message
    for tensor in checkpoint_tensors(checkpoints[0])["networks"]["D"].values():
        assert torch.isfinite(tensor.float()).all()
    assert not (root / params.base.paths.train).exists()


def test_resolution_the_arch_does_not_support_is_named(tmp_path):
    root = tmp_path / "run"
    write_prepared(root, tiny_params(), smooth_images(8, 48))
    with pytest.raises(ArchitectureError, match=r"train\.arch: dcgan supports resolutions \(32, 64, 128, 256\).*48 px"):
        train_gan(tiny_params(), LOG, root)


def frechet_distance_of_tiny_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to 4x4 average-pooled RGB (48 numbers per image):
    an FID whose "network" is a blur, enough to see sky-over-ground structure and colours."""
    from scipy import linalg

    def features(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1).double().numpy()

    fa, fb = features(a), features(b)
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def default_scenes(count: int, size: int, seed: int) -> np.ndarray:
    """Images of the embedded default dataset (ganlib/data/scenes.py), uint8 NHWC."""
    from ganlib.data.scenes import render_scene

    return np.stack([np.asarray(render_scene(seed, index, size)) for index in range(count)])


@pytest.mark.slow
def test_short_training_beats_the_untrained_generator_on_the_default_dataset(tmp_path):
    from ganlib.models.registry import build_generator
    from ganlib.models.sampling import generate_images

    root = tmp_path / "run"
    params = tiny_params("train.g_width=16", "train.d_width=16", "train.batch_size=32", "train.microbatch=32",
                         "train.kimg=6", "train.tick_kimg=2", "train.ema_halflife_kimg=0.5")
    write_prepared(root, params, default_scenes(1000, 32, seed=0))
    summary = train_gan(params, LOG, root)

    trained, info = load_generator(summary.generator_path, torch.device("cpu"))
    untrained = build_generator(params.train, 32).eval()
    held_out = default_scenes(512, 32, seed=1)
    distances = {
        name: frechet_distance_of_tiny_features(
            generate_images(generator, 512, info.z_dim, seed=0, batch_size=128, device=torch.device("cpu")), held_out)
        for name, generator in (("untrained", untrained), ("trained", trained))
    }
    assert distances["trained"] < 0.4 * distances["untrained"], distances
