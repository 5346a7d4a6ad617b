"""Training throughput: our trainer against the PyTorch DCGAN example's training step.

Both train the same networks (DCGAN-64: nz=100, ngf=ndf=64, BatchNorm), on the
same images (the default procedural scenes at 64 px), with the same batch size,
Adam(2e-4, betas=(0.5, 0.999)) and the non-saturating BCE loss:

  baseline    pytorch/examples dcgan/main.py's Generator, Discriminator, weights_init
              and inner loop, verbatim except for the data source (batches handed over
              ready as float tensors on the device, which favours the baseline: no
              DataLoader, no decoding);
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
import torch.nn as nn
import torch.optim as optim

from ganlib.config import Params, load_params
from ganlib.data.dataset import FORMAT, IMAGES_FILE, MANIFEST_FILE
from ganlib.data.scenes import render_scene
from ganlib.hardware.machine import describe_machine
from ganlib.training.loop import train_gan

REPO = Path(__file__).resolve().parents[1]
nz, ngf, ndf, nc = 100, 64, 64, 3


# ---------------------------------------------------------------------- pytorch/examples dcgan/main.py


class Generator(nn.Module):
    def __init__(self, ngpu):
        super(Generator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh()
            # state size. (nc) x 64 x 64
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ngpu):
        super(Discriminator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def baseline_img_per_s(images: np.ndarray, batch_size: int, steps: int, device: torch.device) -> float:
    """The example's inner loop (one D step on real + fake, one G step reusing the fake), timed."""
    torch.manual_seed(0)
    netG = Generator(1).to(device)
    netG.apply(weights_init)
    netD = Discriminator(1).to(device)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    real_label, fake_label = 1, 0
    optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    batches = [
        torch.from_numpy(images[rng.choice(len(images), batch_size)]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        for _ in range(4)
    ]

    def step(data):
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = data
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)
        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(batch_size, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for generator cost
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2

    warmup = max(2, steps // 5)
    for i in range(warmup):
        step(batches[i % len(batches)])
    synchronize(device)
    started = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])  # .item() calls sync every step, as in the example
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


# ---------------------------------------------------------------------- ours


def ours_img_per_s(root: Path, params_file: Path, device: str, batch_size: int, steps: int, settings: list[str], run: int) -> float:
    """train_gan for one warm-up tick plus one measured tick of `steps` steps; the measured tick's img/s."""
    tick_kimg = steps * batch_size / 1000
    overrides = [
        f"base.device={device}", "train.arch=dcgan", f"train.z_dim={nz}", f"train.g_width={ngf}", f"train.d_width={ndf}",
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
