"""Sample quality at equal wall-clock budget: a plain DCGAN-64 baseline against our recipes.

On each data set every recipe trains for the same wall-clock budget on this
machine, then its generator is scored with the same extractor (evaluate's:
the standard FID Inception), the same number of samples and latents
(evaluate.seed) and the same reference statistics (evaluate.n_reference real
images of the set, computed once). The table gives kimg reached, FID and KID.

Data sets, both 64 px and built reproducibly here:
  scenes  the embedded procedural scenes (`scenegan data default`, as `make demo`);
  photos  crops of real landscape photos: the CC0/CC-BY-4.0 wallpapers of Debian's
          `lomiri-wallpapers-16.04` package (fetched with `apt-get download`, or
          pass --photos DIR of photos), cut into --crops square crops of random
          side (a quarter to the whole of the photo's shorter side) at seeded
          random positions, downscaled to 64 px; then our preprocess stage.

Recipes:
  dcgan-baseline bench/baseline_dcgan.py, the DCGAN recipe as the PyTorch examples' dcgan
                 uses it (Radford et al. 2016): latent 100, widths 64, BCE, Adam 2e-4
                 (0.5, 0.999), batch 64, fp32; its loop run until the budget is spent;
                 scored in eval mode (BatchNorm running stats);
  dcgan          ours with params.yaml's train section as it is (the demo's recipe);
  resnet         ours, SNGAN-style ResNet with spectral norm and the hinge loss;
  r3gan          ours, the r3gan-64 preset (RpGAN + R1 + R2 every step, cosine schedules,
                 augmentation probability 0 -> 0.3) with widths and batch cut to what a CPU
                 budget affords (g_width = d_width = 16, batch 32);
  r3gan-lazy     as r3gan, R1/R2 every 4th D step (StyleGAN2's lazy regularisation).
Our recipes need a run length (kimg) up front, since the cosine schedules span
it: each first trains about a kimg to measure its img/s on this machine, and
gets kimg = img/s x budget x 0.95 (ticks add a little). The table shows the
time each actually took.

    .venv/bin/python bench/quality.py                       # 10 minutes per recipe and set
    .venv/bin/python bench/quality.py --minutes 5 --sets photos --recipes dcgan-baseline,r3gan
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from baseline_dcgan import BATCH_SIZE, LATENT_DIM, BaselineTraining
from PIL import Image

from ganlib.config import Params, load_params
from ganlib.data.dataset import open_prepared
from ganlib.data.preprocess import prepare_dataset
from ganlib.data.scenes import write_default_dataset
from ganlib.hardware.machine import describe_machine
from ganlib.metrics.evaluate import score_generator
from ganlib.metrics.report import EvaluationReport
from ganlib.models.generator_file import load_generator
from ganlib.metrics.sources import eval_mode
from ganlib.models.grid import image_grid
from ganlib.models.sampling import generate_images
from ganlib.training.loop import train_gan

REPO = Path(__file__).resolve().parents[1]
WALLPAPER_PACKAGE = "lomiri-wallpapers-16.04"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
RESOLUTION = 64

# Our recipes as --set overrides on params.yaml (paths and kimg are added per run).
R3GAN_CPU = ("train.g_width=16", "train.d_width=16", "train.batch_size=32", "train.microbatch=32")
OURS = {
    "dcgan": (),
    "resnet": ("train.arch=resnet", "train.loss=hinge"),
    "r3gan": ("preset:r3gan-64", *R3GAN_CPU),
    "r3gan-lazy": ("preset:r3gan-64", *R3GAN_CPU, "train.r1_interval=4"),
}
BASELINE = "dcgan-baseline"
RECIPES = (BASELINE, *OURS)


@dataclass
class Outcome:
    recipe: str
    kimg: float
    train_seconds: float
    g_parameters: int
    report: EvaluationReport


# ---------------------------------------------------------------------- data sets


def wallpaper_photos(cache: Path) -> Path:
    """The wallpaper package's photos, extracted once into `cache` (apt-get download + dpkg-deb)."""
    target = cache / WALLPAPER_PACKAGE
    if not target.is_dir():
        work = Path(tempfile.mkdtemp(dir=cache))
        subprocess.run(["apt-get", "download", WALLPAPER_PACKAGE], cwd=work, check=True)
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "tree")], check=True)
        (work / "tree").rename(target)
        shutil.rmtree(work)
    return target


def write_photo_crops(photos: Path, out_dir: Path, count: int, seed: int) -> int:
    """`count` square crops of the photos under `photos`, as 64-px PNGs; returns the number of photos used."""
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    sources = []
    for path in files:
        with Image.open(path) as im:
            if min(im.size) >= 4 * RESOLUTION:  # skip thumbnails and icons
                # Pre-shrink once (shorter side 512): crops are downscaled to 64 px anyway.
                scale = 512 / min(im.size)
                sources.append(im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                                        Image.Resampling.LANCZOS))
    if not sources:
        raise SystemExit(f"{photos}: no photos of at least {4 * RESOLUTION} px found")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True)
    for i in range(count):
        im = sources[i % len(sources)]
        short = min(im.size)
        side = int(rng.uniform(0.25, 1.0) * short)
        left = int(rng.integers(0, im.width - side + 1))
        top = int(rng.integers(0, im.height - side + 1))
        crop = im.crop((left, top, left + side, top + side)).resize((RESOLUTION, RESOLUTION), Image.Resampling.LANCZOS)
        crop.save(out_dir / f"crop-{i:05d}.png")
    return len(sources)


def prepare_set(name: str, root: Path, params: Params, args: argparse.Namespace, log: logging.Logger) -> str:
    raw = root / params.base.paths.raw
    if name == "scenes":
        write_default_dataset(raw, params.data.n_images, RESOLUTION, params.data.seed, log)
        what = f"{params.data.n_images} procedural scenes (data.seed {params.data.seed})"
    else:
        photos = args.photos or wallpaper_photos(args.cache)
        used = write_photo_crops(photos, raw, args.crops, seed=0)
        what = f"{args.crops} crops of {used} photos from {photos}"
    summary = prepare_dataset(params, log, root)
    return f"{what}; {summary.count} prepared images"


# ---------------------------------------------------------------------- training


def train_baseline(root: Path, params: Params, seconds: float, seed: int) -> tuple[torch.nn.Module, float, float]:
    """The baseline's loop on the prepared images until `seconds` have passed; (G, kimg, seconds)."""
    images = open_prepared(root / params.base.paths.prepared).images
    device = torch.device("cpu")
    baseline = BaselineTraining(device, seed)
    rng = np.random.default_rng(seed)
    batch, shown = BATCH_SIZE, 0
    order = rng.permutation(len(images))
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if len(order) < batch:  # a new epoch, reshuffled (incomplete last batches are dropped)
            order = rng.permutation(len(images))
        chosen, order = np.sort(order[:batch]), order[batch:]
        data = torch.from_numpy(np.asarray(images[chosen])).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        baseline.step(data)
        shown += batch
    return baseline.generator, shown / 1000, time.perf_counter() - started


def recipe_overrides(recipe: str, params_file: Path) -> list[str]:
    from ganlib.config import preset_overrides

    overrides: list[str] = []
    for item in OURS[recipe]:
        if item.startswith("preset:"):
            overrides += [o for o in preset_overrides(load_params(params_file), item.removeprefix("preset:"))
                          if not o.startswith("preprocess.")]  # the set is prepared once, at 64 px
        else:
            overrides.append(item)
    return overrides


def train_ours(root: Path, params_file: Path, set_overrides: list[str], recipe: str, seconds: float,
               log: logging.Logger) -> tuple[Path, float, float]:
    """Measure img/s on about a kimg, then train for the budget; (generator file, kimg, seconds)."""
    overrides = [*set_overrides, *recipe_overrides(recipe, params_file), "train.resume=fresh",
                 "evaluate.during_training.every_kimg=0", "train.keep_last=1"]

    def run(name: str, kimg: float, tick_kimg: float) -> tuple[list, float]:
        params = load_params(params_file, [*overrides, f"base.paths.train=runs/{name}/train",
                                           f"base.paths.checkpoints=runs/{name}/checkpoints",
                                           f"train.kimg={kimg:.3f}", f"train.tick_kimg={tick_kimg:.3f}"])
        ticks: list = []
        started = time.perf_counter()
        train_gan(params, log, root, on_tick=ticks.append)
        return ticks, time.perf_counter() - started

    ticks, _ = run(f"{recipe}-calibrate", 1.024, 0.512)
    img_per_s = ticks[-1].img_per_s  # the second tick: after warm-up
    kimg = max(img_per_s * seconds * 0.95 / 1000, 0.1)
    _, took = run(recipe, kimg, kimg)  # one tick, at the end: upkeep (grid, checkpoint) once
    return root / f"runs/{recipe}/train/generator.pt", kimg, took


# ---------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class BaselineInfo:
    """GeneratorInfo for the baseline's generator (evaluation checks resolution and dataset)."""

    z_dim: int
    resolution: int
    kimg: float
    data_md5: str | None
    dataset_sha256: str | None


def run_set(name: str, args: argparse.Namespace, log: logging.Logger) -> tuple[str, list[Outcome]]:
    root = Path(tempfile.mkdtemp(prefix=f"scenegan-quality-{name}-"))
    shutil.copytree(REPO / "weights", root / "weights")
    set_overrides = [f"preprocess.resolution={RESOLUTION}", f"preprocess.min_side={RESOLUTION}",
                     f"evaluate.n_samples={args.n_samples}", f"evaluate.n_reference={args.n_reference}",
                     "evaluate.metrics=[fid,kid]", "base.device=cpu"]
    params = load_params(args.params, set_overrides)
    described = prepare_set(name, root, params, args, log)
    print(f"[{name}] {described}", flush=True)
    outcomes = []
    for recipe in args.recipes:
        print(f"[{name}] {recipe}: training for {args.minutes:g} min", flush=True)
        if recipe == BASELINE:
            generator, kimg, took = train_baseline(root, params, args.minutes * 60, seed=0)
            dataset = open_prepared(root / params.base.paths.prepared)
            info = BaselineInfo(LATENT_DIM, RESOLUTION, kimg, dataset.data_md5, dataset.content_hash)
        else:
            path, kimg, took = train_ours(root, args.params, set_overrides, recipe, args.minutes * 60, log)
            generator, info = load_generator(path, torch.device("cpu"))
        g_parameters = sum(p.numel() for p in generator.parameters())
        report = score_generator(generator, info, params, log, root, torch.device("cpu"))
        with eval_mode(generator):
            samples = generate_images(generator, 64, info.z_dim, seed=0, batch_size=64, device=torch.device("cpu"))
        Image.fromarray(image_grid(samples, cols=8)).save(args.out / f"{name}-{recipe}.png")
        outcomes.append(Outcome(recipe, kimg, took, g_parameters, report))
        print(f"[{name}] {recipe}: {kimg:.1f} kimg in {took:.0f} s, FID {report.fid:.2f}, "
              f"KID {report.kid_mean * 1e3:.2f} ± {report.kid_std * 1e3:.2f} (x1e-3)", flush=True)
    shutil.rmtree(root)
    return described, outcomes


def table(name: str, described: str, outcomes: list[Outcome], minutes: float) -> str:
    lines = [f"**{name}** ({described}); budget {minutes:g} min per recipe", "",
             f"| recipe | G params | kimg reached | train s | FID | KID × 10³ (± std) | FID vs {BASELINE} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    baseline = next((o.report.fid for o in outcomes if o.recipe == BASELINE), None)
    for o in outcomes:
        ratio = f"{o.report.fid / baseline:.2f}x" if baseline else "-"
        lines.append(f"| {o.recipe} | {o.g_parameters / 1e6:.2f} M | {o.kimg:.1f} | {o.train_seconds:.0f} | "
                     f"{o.report.fid:.1f} | {o.report.kid_mean * 1e3:.1f} ± {o.report.kid_std * 1e3:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe and set")
    parser.add_argument("--sets", default="scenes,photos", help="comma-separated: scenes, photos")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of: {', '.join(RECIPES)}")
    parser.add_argument("--photos", type=Path, help="a folder of photos (default: the wallpaper package)")
    parser.add_argument("--crops", type=int, default=3000, help="crops cut from the photos")
    parser.add_argument("--n-samples", type=int, default=1000, help="generated images per score")
    parser.add_argument("--n-reference", type=int, default=1000, help="real images in the reference statistics")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "scenegan-bench")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench-quality",
                        help="where the tables and each recipe's sample grid go")
    args = parser.parse_args()
    args.recipes = [r for r in args.recipes.split(",") if r]
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log = logging.getLogger("bench.quality")
    os.environ.setdefault("SCENEGAN_CACHE_DIR", str(args.cache / "machine"))

    machine = describe_machine(torch.device("cpu")).describe()
    print(f"machine: {machine}", flush=True)
    sections = [f"machine: {machine}", f"command: {' '.join([Path(sys.executable).name, *sys.argv])}", ""]
    for name in [s for s in args.sets.split(",") if s]:
        described, outcomes = run_set(name, args, log)
        sections += [table(name, described, outcomes, args.minutes), ""]
        (args.out / "quality.md").write_text("\n".join(sections))
        print("\n" + table(name, described, outcomes, args.minutes) + "\n", flush=True)
        with (args.out / "quality.jsonl").open("a") as f:
            for o in outcomes:
                f.write(json.dumps({"set": name, "recipe": o.recipe, "kimg": o.kimg, "train_seconds": o.train_seconds,
                                    "minutes": args.minutes, "machine": machine, **o.report.to_json()}) + "\n")


if __name__ == "__main__":
    main()
