"""Training throughput: our trainer against a plain DCGAN-64 training step (bench/baseline_dcgan.py).

Both train the same networks (DCGAN-64: nz=100, ngf=ndf=64, BatchNorm), on the
same images (the default procedural scenes at 64 px), with the same batch size,
Adam(2e-4, betas=(0.5, 0.999)) and the non-saturating BCE loss:

  baseline    bench/baseline_dcgan.py: the DCGAN recipe as the PyTorch examples' dcgan
              uses it (Radford et al. 2016), written for this project, fp32, one D then
              one G step per iteration, batches handed over ready as float tensors on the
              device (which favours the baseline: no data loading, no decoding);
  ours-fp32   ganlib.training.loop.train_gan, precision fp32, NCHW;
  ours-fp32-cl  fp32 with channels_last;
  ours-bf16-cl  bf16 autocast and channels_last (plus torch.compile on CUDA with --compile);
  ours-auto   the defaults, `train.precision: auto` and `train.channels_last: auto`:
              what the speed probe picks on this machine (its choice is printed).

"Ours" is the whole trainer, not a stripped step: it samples real batches from
the uint8 memmap, keeps the EMA generator, checks losses and gradients for NaN/inf
every step, and its img/s is what its ticks report (upkeep excluded). Each round
runs every variant once, interleaved, after one warm-up tick; the machine is
shared, so the best round (least disturbed) is reported beside the median, and
only ratios from one run mean anything.

    .venv/bin/python bench/train_throughput.py                        # CPU, batch 64
    .venv/bin/python bench/train_throughput.py --device cuda --batch 512 --steps 200
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from baseline_dcgan import D_WIDTH, G_WIDTH, LATENT_DIM, BaselineTraining

from ganlib.config import Params, load_params
from ganlib.data.dataset import FORMAT, IMAGES_FILE, MANIFEST_FILE
from ganlib.data.scenes import render_scene
from ganlib.hardware.machine import describe_machine
from ganlib.training.loop import train_gan

REPO = Path(__file__).resolve().parents[1]


def baseline_img_per_s(images: np.ndarray, batch_size: int, steps: int, device: torch.device) -> float:
    """The baseline's iteration (one D step on real + fake, one G step reusing the fakes), timed."""
    baseline = BaselineTraining(device)
    rng = np.random.default_rng(0)
    batches = [
        torch.from_numpy(images[rng.choice(len(images), batch_size)]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        for _ in range(4)
    ]
    warmup = max(2, steps // 5)
    for i in range(warmup):
        baseline.step(batches[i % len(batches)])
    synchronize(device)
    started = time.perf_counter()
    for i in range(steps):
        baseline.step(batches[i % len(batches)])  # its .item() calls sync every step
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


# ---------------------------------------------------------------------- ours


def ours_img_per_s(root: Path, params_file: Path, device: str, batch_size: int, steps: int, settings: list[str], run: int) -> float:
    """train_gan for one warm-up tick plus one measured tick of `steps` steps; the measured tick's img/s."""
    tick_kimg = steps * batch_size / 1000
    overrides = [
        f"base.device={device}", "train.arch=dcgan",
        f"train.z_dim={LATENT_DIM}", f"train.g_width={G_WIDTH}", f"train.d_width={D_WIDTH}",
        "train.loss=bce", "train.r1_gamma=0", "train.diffaugment=[]", f"train.batch_size={batch_size}",
        f"train.microbatch={batch_size}", "train.lr_g=0.0002", "train.lr_d=0.0002", "train.betas=[0.5,0.999]",
        "train.d_steps=1", f"train.kimg={2 * tick_kimg}", f"train.tick_kimg={tick_kimg}", "train.keep_last=1",
        "train.nproc=1", "train.resume=fresh", "train.grid_size=2",
        f"base.paths.checkpoints=runs/checkpoints-{run}", f"base.paths.train=runs/train-{run}", *settings,
    ]
    params: Params = load_params(params_file, overrides)
    reports = []
    train_gan(params, logging.getLogger("bench.train"), root, on_tick=reports.append)
    return reports[-1].img_per_s


def speed_choice(train_dir: Path) -> str:
    """How a run resolved its precision and layout (the `speed` record its stats.jsonl carries)."""
    last_tick = json.loads((train_dir / "stats.jsonl").read_text().splitlines()[-1])
    return last_tick.get("speed", {}).get("how", "(not recorded)")


# ---------------------------------------------------------------------- main


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_scenes(root: Path, count: int, size: int) -> np.ndarray:
    images = np.stack([np.asarray(render_scene(0, i, size).convert("RGB")) for i in range(count)])
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    np.save(prepared / IMAGES_FILE, images)
    import hashlib  # local: only the scratch manifest needs it

    digest = hashlib.sha256((prepared / IMAGES_FILE).read_bytes()).hexdigest()
    (prepared / MANIFEST_FILE).write_text(json.dumps(
        {"format": FORMAT, "count": count, "resolution": size, "data_md5": None, "images_sha256": digest}))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=1024, help="scenes rendered for the run")
    parser.add_argument("--compile", action="store_true", help="add torch.compile to ours-best")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    logging.getLogger("bench.train").setLevel(logging.WARNING)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the same autotuning our trainer turns on

    compile_setting = f"train.compile={str(args.compile).lower()}"
    variants = {
        "ours-fp32": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
        "ours-fp32-cl": ["train.precision=fp32", "train.channels_last=true", "train.compile=false"],
        "ours-bf16-cl": ["train.precision=bf16", "train.channels_last=true", compile_setting],
        "ours-auto": ["train.precision=auto", "train.channels_last=auto", compile_setting],
    }
    print(f"machine: {describe_machine(device).describe()}", flush=True)
    results: dict[str, list[float]] = {"baseline": [], **{name: [] for name in variants}}
    with tempfile.TemporaryDirectory(prefix="scenegan-bench-train-") as scratch:
        root = Path(scratch)
        # A fresh probe cache: ours-auto measures its choice in this run, like a first run on a new machine.
        os.environ["SCENEGAN_CACHE_DIR"] = str(root / "machine-cache")
        images = write_scenes(root, args.images, 64)
        for round_index in range(args.rounds):
            results["baseline"].append(baseline_img_per_s(images, args.batch, args.steps, device))
            for name, settings in variants.items():
                run = f"{name}-{round_index}"
                results[name].append(ours_img_per_s(root, args.params, args.device, args.batch, args.steps, settings, run))
            print(f"round {round_index + 1}/{args.rounds}: " + "  ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True)
        auto_choice = speed_choice(root / "runs/train-ours-auto-0")

    base_best = max(results["baseline"])
    print(f"\nDCGAN-64, batch {args.batch}, {args.steps} steps x {args.rounds} rounds on {describe_machine(device).describe()}")
    print(f"ours-auto: {auto_choice}")
    print(f"{'variant':<12}{'best img/s':>12}{'median':>10}{'x baseline (best)':>20}{'x baseline (paired median)':>28}")
    paired: dict[str, float] = {}
    for name, values in results.items():
        # Paired: each round's ratio, so a disturbance that hits one whole round cancels out.
        paired[name] = statistics.median(v / b for v, b in zip(values, results["baseline"]))
        print(f"{name:<12}{max(values):>12.1f}{statistics.median(values):>10.1f}"
              f"{max(values) / base_best:>20.2f}{paired[name]:>28.2f}")
    if device.type == "cpu":
        print(f"targets (paired median): ours-fp32 >= 1.0x: {paired['ours-fp32']:.2f}x; "
              f"ours-auto >= 1.5x: {paired['ours-auto']:.2f}x")
    else:
        print(f"target: >= 25000 img/s at batch >= 512 on one GPU: ours-auto {max(results['ours-auto']):.0f} img/s")


if __name__ == "__main__":
    main()
