"""Sample quality at equal wall-clock budget: a plain DCGAN-64 baseline against our recipes.

On each data set every recipe trains for the same wall-clock budget on this
machine, then its generator is scored with the same extractor (evaluate's:
the standard FID Inception), the same number of samples and latents
(evaluate.seed) and the same reference statistics (evaluate.n_reference real
images of the set, computed once). The table gives kimg reached, FID and KID.

Data sets, both 64 px and built reproducibly here:
  scenes  the embedded procedural scenes (`scenegan data default`, as `make demo`);
  photos  a folder of photos, by default the CC0/CC-BY-4.0 wallpapers of Debian's
          `lomiri-wallpapers-16.04` package (fetched with `apt-get download`), or
          --photos DIR: any folder, sub-folders searched; files Pillow cannot read
          as images are skipped and counted in the log, EXIF rotation is applied.
          A photo whose shorter side is below 4x 64 px is used whole: its centre
          square, resized to 64 px (one image). The bigger ones give the rest of
          --crops: squares of a quarter to all of the shorter side at seeded random
          positions, downscaled to 64 px. The table header says how many photos
          were used each way. Then our preprocess stage.

Recipes:
  dcgan-baseline bench/baseline_dcgan.py, the DCGAN recipe as the PyTorch examples' dcgan
                 uses it (Radford et al. 2016): latent 100, widths 64, BCE, Adam 2e-4
                 (0.5, 0.999), batch 64, fp32; its loop run until the budget is spent;
                 scored in eval mode (BatchNorm running stats);
  dcgan          ours with params.yaml's train section as it is (the demo's recipe:
                 class-conditional on a labelled set such as scenes' times of day);
  dcgan-unconditional  the same, told to ignore the classes (train.conditional: false);
  resnet         ours, SNGAN-style ResNet with spectral norm and the hinge loss;
  r3gan          ours, the r3gan-64 preset (RpGAN + R1 + R2 every step, cosine schedules,
                 augmentation probability 0 -> 0.3) with widths and batch cut to what a CPU
                 budget affords (g_width = d_width = 16, batch 32);
  r3gan-lazy     as r3gan, R1/R2 every 4th D step (StyleGAN2's lazy regularisation).
Our recipes need a run length (kimg) up front, since the cosine schedules span
it: each first trains about a kimg to measure its img/s on this machine, and
gets kimg = img/s x budget x 0.95 (ticks add a little). The table shows the
time each actually took.

--example PATH/TO/main.py adds the row pytorch-example: the real script of
pytorch/examples (dcgan/main.py, not part of this repository: fetch it) run
unmodified in a child process on the same prepared images (written as PNGs for
its `--dataset folder`), with the recipe's settings passed explicitly, on the
CPU, `--workers 0`, for the same budget. It trains by epochs and checkpoints
after each, so it is stopped between two iterations once the budget is spent
(the clock starts at its first batch, as the baseline's does at its loop): the
epoch is ended there, the script saves netG_epoch_<k>.pth itself, and that
state_dict is loaded into baseline_dcgan's generator (same layers; the keys'
`main.` becomes `layers.`) and scored like the others. Its kimg counts every
image it trained on. Before that, once, a one-step equivalence check: the
example starts from our baseline's initial weights (its --netG/--netD), its
first batch and RNG state are recorded, and our step on the same batch and
latents must give the same losses and bit-identical weights.

    .venv/bin/python bench/quality.py                       # 10 minutes per recipe and set
    .venv/bin/python bench/quality.py --minutes 5 --sets photos --recipes dcgan-baseline,r3gan
    .venv/bin/python bench/quality.py --minutes 5 --sets photos --photos ~/Pictures --recipes dcgan-baseline,dcgan
    .venv/bin/python bench/quality.py --minutes 5 --recipes dcgan-baseline --example /tmp/examples/dcgan/main.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from baseline_dcgan import BATCH_SIZE, LATENT_DIM, BaselineDiscriminator, BaselineGenerator, BaselineTraining
from PIL import Image, ImageOps

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
RESOLUTION = 64
WHOLE_BELOW = 4 * RESOLUTION  # a photo with a shorter side below this is used whole, not cut into crops
SHRINK_TO = 512  # shorter side big photos are shrunk to before cropping
EXIF_ORIENTATION = 0x0112
EXIF_SIDEWAYS = {5, 6, 7, 8}  # orientations that rotate by 90 degrees: width and height swap

# Our recipes as --set overrides on params.yaml (paths and kimg are added per run).
R3GAN_CPU = ("train.g_width=16", "train.d_width=16", "train.batch_size=32", "train.microbatch=32")
OURS = {
    "dcgan": (),
    "dcgan-unconditional": ("train.conditional=false",),
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


@dataclass(frozen=True)
class PhotoSet:
    """What write_photo_crops made of a folder: images written, and how the photos were used."""

    folder: Path
    written: int
    whole: int  # small photos, one centre square each
    cropped: int  # big photos, cut into random crops
    crops: int
    skipped: int  # files that are not images Pillow can read, and hidden files

    def describe(self) -> str:
        text = (f"{self.written} images from {self.folder}: {self.whole} photos used whole (shorter side below "
                f"{WHOLE_BELOW} px, centre square), {self.cropped} cut into {self.crops} random crops")
        return text + (f"; {self.skipped} files skipped (not images)" if self.skipped else "")


@dataclass(frozen=True)
class _Photo:
    path: Path
    width: int  # upright, as EXIF orientation shows it
    height: int


def _scan_photos(folder: Path, log: logging.Logger) -> tuple[list[_Photo], int]:
    """Every image under `folder` (sub-folders too) with its upright size, and how many files were skipped."""
    photos: list[_Photo] = []
    skipped: list[str] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):  # .git, .DS_Store, editor files
            skipped.append(f"{relative} (hidden)")
            continue
        try:
            # Only the header is read here; pixels are decoded once, when the images are written.
            with Image.open(path) as im:
                width, height = im.size
                if im.getexif().get(EXIF_ORIENTATION) in EXIF_SIDEWAYS:
                    width, height = height, width
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            skipped.append(f"{relative} ({type(error).__name__})")
            continue
        photos.append(_Photo(path, width, height))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f", and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning("photos: skipped %d file(s) under %s that are not images Pillow can read: %s",
                    len(skipped), folder, shown)
    return photos, len(skipped)


def _decode_upright(photo: _Photo, log: logging.Logger) -> Image.Image | None:
    """The photo as upright RGB pixels, or None (with a warning) if it cannot be decoded after all."""
    try:
        with Image.open(photo.path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        log.warning("photos: %s: cannot be decoded (%s); left out. Re-save it or remove it from the folder",
                    photo.path, error)
        return None


def _shrunk_size(width: int, height: int) -> tuple[int, int]:
    # Big photos are pre-shrunk once (shorter side SHRINK_TO): crops end up at RESOLUTION px anyway.
    scale = SHRINK_TO / min(width, height)
    return round(width * scale), round(height * scale)


def write_photo_crops(photos: Path, out_dir: Path, count: int, seed: int, log: logging.Logger) -> PhotoSet:
    """Square RESOLUTION-px PNGs made from the photos under `photos` (sub-folders too) in `out_dir`.

    A photo whose shorter side is below WHOLE_BELOW (4x the resolution) is used
    whole: its centre square, resized (`whole-NNNNN.png`, one per photo). Random
    crops of such a photo would be mostly upscaled blur and near-copies of each
    other. The bigger photos give the rest of `count` (at least one crop each):
    squares of a quarter to all of the shorter side at seeded random positions,
    dealt out in turn (`crop-NNNNN.png`). Non-images are skipped and counted in
    the log; a folder without any usable photo is an error naming it.
    """
    if not photos.is_dir():
        raise SystemExit(f"--photos {photos}: not a folder; pass a folder of photos (sub-folders are searched)")
    found, skipped = _scan_photos(photos, log)
    small = [p for p in found if min(p.width, p.height) < WHOLE_BELOW]
    big = [p for p in found if min(p.width, p.height) >= WHOLE_BELOW]
    n_crops = max(count - len(small), len(big)) if big else 0

    # All crop boxes are drawn first, in one seeded sequence that deals crop i to big photo
    # i mod n, so each photo is then decoded once and never all of them held in memory.
    rng = np.random.default_rng(seed)
    boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for i in range(n_crops):
        width, height = _shrunk_size(big[i % len(big)].width, big[i % len(big)].height)
        side = int(rng.uniform(0.25, 1.0) * min(width, height))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        boxes.setdefault(i % len(big), []).append((i, (left, top, left + side, top + side)))

    out_dir.mkdir(parents=True)
    size = (RESOLUTION, RESOLUTION)
    whole = cropped = crops = 0
    for index, photo in enumerate(small):
        im = _decode_upright(photo, log)
        if im is None:
            skipped += 1
            continue
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im.crop((left, top, left + side, top + side)).resize(size, Image.Resampling.LANCZOS).save(
            out_dir / f"whole-{index:05d}.png")
        whole += 1
    for index, photo in enumerate(big):
        im = _decode_upright(photo, log)
        if im is None:
            skipped += 1
            continue
        im = im.resize(_shrunk_size(im.width, im.height), Image.Resampling.LANCZOS)
        for i, box in boxes[index]:
            im.crop(box).resize(size, Image.Resampling.LANCZOS).save(out_dir / f"crop-{i:05d}.png")
        cropped += 1
        crops += len(boxes[index])
    if whole + crops == 0:
        raise SystemExit(f"--photos {photos}: no usable photo in this folder or its sub-folders ({skipped} files "
                         "skipped: not images Pillow can read, or hidden); pass a folder of JPEG/PNG/WebP photos")
    log.info("photos: %d used whole, %d cut into %d crops, %d files skipped", whole, cropped, crops, skipped)
    return PhotoSet(photos, whole + crops, whole, cropped, crops, skipped)


def prepare_set(name: str, root: Path, params: Params, args: argparse.Namespace, log: logging.Logger) -> str:
    raw = root / params.base.paths.raw
    if name == "scenes":
        write_default_dataset(raw, params.data.n_images, RESOLUTION, params.data.seed, log)
        what = f"{params.data.n_images} procedural scenes (data.seed {params.data.seed})"
    else:
        photos = args.photos or wallpaper_photos(args.cache)
        what = write_photo_crops(photos, raw, args.crops, seed=0, log=log).describe()
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


# ---------------------------------------------------------------------- the PyTorch example, run as it is
#
# The example (pytorch/examples, dcgan/main.py) is a script: it parses its
# arguments, trains by epochs and saves netG_epoch_<k>.pth / netD_epoch_<k>.pth
# (state_dicts) after each epoch. To stop it at a wall-clock budget it runs in a
# child process of this file (EXAMPLE_RUNNER) that executes the script unmodified
# with one change around it: torch.utils.data.DataLoader is replaced by a
# subclass whose batches come through an ExampleClock. When the script asks for
# a batch after the budget is spent, its iteration is complete, so the clock
# ends the epoch there; the script saves its checkpoint as usual, and the next
# epoch's first request ends the run. Every batch the clock handed out was
# trained on, so the count of images is exact (the example keeps incomplete
# last batches).

EXAMPLE = "pytorch-example"
EXAMPLE_RUNNER = "--run-example"  # first argument of the child process (not for users)
EXAMPLE_KEY_PREFIX = "main."  # the example keeps each network's layers in a Sequential named `main`
OUR_KEY_PREFIX = "layers."  # bench/baseline_dcgan.py: the same layers, in the same order, in `layers`
EXAMPLE_CHECKPOINT = re.compile(r"netG_epoch_(\d+)\.pth")
EXAMPLE_LOSSES = re.compile(r"Loss_D: (\S+) Loss_G: (\S+)")  # its per-iteration line, 4 decimals
CHECK_BATCH = 16  # images in the one-step equivalence check


class BudgetSpent(Exception):
    """Raised into the example's epoch loop once the budget is spent and its checkpoint saved."""


class ExampleClock:
    """Hands the example its batches until `seconds` have passed (or `batches` were handed out).

    The clock starts at the first batch request, as the baseline's starts at
    its loop: the example's imports and folder scan are not counted.
    `record` receives the first batch and the global torch RNG state at the
    moment it is handed over (the example draws its latents from that state
    next), for the one-step equivalence check.
    """

    def __init__(self, seconds: float | None, batches: int | None, record: Path | None) -> None:
        self.seconds, self.batches, self.record = seconds, batches, record
        self.started: float | None = None
        self.elapsed = 0.0
        self.images = self.handed_out = 0
        self.spent = False

    def _over(self) -> bool:
        assert self.started is not None
        if self.seconds is not None and time.perf_counter() - self.started >= self.seconds:
            return True
        return self.batches is not None and self.handed_out >= self.batches

    def feed(self, batches: Iterator[Any]) -> Iterator[Any]:
        """One epoch's batches; ends the epoch early when the budget is spent."""
        if self.started is None:
            self.started = time.perf_counter()
        # Checked before each request: the script asks for the next batch only after its
        # iteration (D step, G step, logging) is done, so the networks are whole here.
        while not self._over():
            try:
                batch = next(batches)
            except StopIteration:
                return
            if self.record is not None and self.handed_out == 0:
                torch.save({"images": batch[0].clone(), "rng_state": torch.get_rng_state()}, self.record)
            self.images += len(batch[0])
            self.handed_out += 1
            yield batch
        self.elapsed = time.perf_counter() - self.started
        self.spent = True

    def loader_class(self, base: type) -> type:
        clock = self

        class ClockedDataLoader(base):  # type: ignore[misc, valid-type]
            def __iter__(self) -> Iterator[Any]:
                if clock.spent:
                    raise BudgetSpent
                return clock.feed(super().__iter__())

        return ClockedDataLoader


def run_example_child(argv: list[str]) -> None:
    """The child process: run the example script under an ExampleClock and write what it trained as JSON."""
    parser = argparse.ArgumentParser(prog=f"quality.py {EXAMPLE_RUNNER}")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--batches", type=int)
    parser.add_argument("--record-first-batch", type=Path)
    parser.add_argument("script", type=Path)
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    clock = ExampleClock(args.seconds, args.batches, args.record_first_batch)
    torch.utils.data.DataLoader = clock.loader_class(torch.utils.data.DataLoader)  # type: ignore[misc]
    sys.argv = [str(args.script), *args.script_args]
    try:
        runpy.run_path(str(args.script), run_name="__main__")
    except BudgetSpent:
        pass
    if not clock.spent and clock.started is not None:  # the script ran out of epochs first
        clock.elapsed = time.perf_counter() - clock.started
    args.report.write_text(json.dumps({"images": clock.images, "batches": clock.handed_out, "seconds": clock.elapsed,
                                       "stopped_by_budget": clock.spent, "torch_threads": torch.get_num_threads()}))


def to_example_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One of our baseline's state_dicts under the example's key names."""
    return {EXAMPLE_KEY_PREFIX + key.removeprefix(OUR_KEY_PREFIX): value for key, value in state.items()}


def load_example_state(network: torch.nn.Module, checkpoint: Path) -> None:
    """Load one of the example's checkpoints into our network of the same layout; a clear error if it differs."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    foreign = sorted(key for key in state if not key.startswith(EXAMPLE_KEY_PREFIX))
    renamed = {OUR_KEY_PREFIX + key.removeprefix(EXAMPLE_KEY_PREFIX): value for key, value in state.items()}
    ours = network.state_dict()
    missing = sorted(set(ours) - set(renamed))
    unexpected = sorted(set(renamed) - set(ours))
    shapes = sorted(key for key in set(ours) & set(renamed) if ours[key].shape != renamed[key].shape)
    if foreign or missing or unexpected or shapes:
        raise SystemExit(
            f"{checkpoint}: not the layout of bench/baseline_dcgan.py's {type(network).__name__} "
            f"(keys outside {EXAMPLE_KEY_PREFIX!r}: {foreign[:3]}, missing: {missing[:3]}, unexpected: "
            f"{unexpected[:3]}, other shapes: {shapes[:3]}); --example must be pytorch/examples' dcgan/main.py, "
            "run here with --nz 100 --ngf 64 --ndf 64 --imageSize 64")
    network.load_state_dict(renamed)


def write_image_folder(images: np.ndarray, folder: Path) -> Path:
    """The prepared images as PNGs in the layout the example's `--dataset folder` reads (one class folder)."""
    target = folder / "images"
    target.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(np.asarray(image)).save(target / f"{index:05d}.png")
    return folder


def run_example(example: Path, work: Path, timeout: float, runner_args: list[str],
                example_args: list[str]) -> tuple[dict[str, Any], str]:
    """Run the example under the clock in a child process; (its report, its printed output)."""
    work.mkdir(parents=True, exist_ok=True)
    report, output = work / "report.json", work / "output.log"
    command = [sys.executable, str(Path(__file__).resolve()), EXAMPLE_RUNNER, "--report", str(report),
               *runner_args, str(example), *example_args]
    with output.open("w") as sink:
        try:
            finished = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"--example {example}: still running after {timeout:.0f} s; its output: {output}")
    printed = output.read_text(errors="replace")
    if finished.returncode != 0 or not report.is_file():
        tail = "\n".join(printed.splitlines()[-15:])
        raise SystemExit(f"--example {example} failed (exit {finished.returncode}); the last lines it printed:\n"
                         f"{tail}\n(--example must be pytorch/examples' dcgan/main.py; it needs torchvision)")
    return json.loads(report.read_text()), printed


def example_arguments(data: Path, outf: Path, batch: int, niter: int, seed: int) -> list[str]:
    # The recipe's settings are passed explicitly (they are also the example's defaults) so that
    # a changed default cannot change what is compared. On the CPU it needs no device flag;
    # --workers 0 keeps its data loading in its own process (decoding 64-px PNGs is cheap).
    return ["--dataset", "folder", "--dataroot", str(data), "--workers", "0", "--batchSize", str(batch),
            "--imageSize", str(RESOLUTION), "--nz", str(LATENT_DIM), "--ngf", "64", "--ndf", "64",
            "--niter", str(niter), "--manualSeed", str(seed), "--outf", str(outf)]


def last_example_checkpoint(outf: Path, example: Path) -> Path:
    found = [(int(m.group(1)), p) for p in outf.glob("netG_epoch_*.pth") if (m := EXAMPLE_CHECKPOINT.fullmatch(p.name))]
    if not found:
        raise SystemExit(f"--example {example}: wrote no netG_epoch_*.pth into {outf}")
    return max(found)[1]


def train_example(example: Path, data: Path, work: Path, seconds: float, seed: int
                  ) -> tuple[torch.nn.Module, float, float]:
    """The real example on `data` until `seconds` of training have passed; (G, kimg, seconds)."""
    report, _ = run_example(example, work, timeout=2 * seconds + 600, runner_args=["--seconds", str(seconds)],
                            example_args=example_arguments(data, work / "out", BATCH_SIZE, 10**6, seed))
    generator = BaselineGenerator()
    load_example_state(generator, last_example_checkpoint(work / "out", example))
    return generator, report["images"] / 1000, report["seconds"]


@dataclass(frozen=True)
class StepCheck:
    """One training iteration of the example and of our baseline from the same weights, batch and latents."""

    batch: int
    ours: tuple[float, float]  # D loss, G loss
    example: tuple[float, float] | None  # as the example printed them (4 decimals)
    g_max_diff: float  # largest |difference| of G's parameters after the step
    d_max_diff: float  # of D's parameters and BatchNorm statistics

    @property
    def equal(self) -> bool:
        losses = self.example is None or all(f"{a:.4f}" == f"{b:.4f}" for a, b in zip(self.ours, self.example))
        return losses and self.g_max_diff == 0 and self.d_max_diff == 0

    def describe(self) -> str:
        printed = ("not printed" if self.example is None
                   else f"D {self.example[0]:.4f}, G {self.example[1]:.4f}")
        return (f"one iteration from the same weights, batch ({self.batch} images) and latents: losses ours "
                f"D {self.ours[0]:.4f}, G {self.ours[1]:.4f}, example {printed}; after it, largest |difference| "
                f"of G's parameters {self.g_max_diff:.3g}, of D's parameters and BatchNorm statistics "
                f"{self.d_max_diff:.3g} ({'identical' if self.equal else 'NOT identical'})")


def check_example_step(example: Path, data: Path, work: Path, seed: int = 0) -> StepCheck:
    """Run one iteration of the example from our initial weights and compare with BaselineTraining.step.

    Our initial weights go in through the example's --netG/--netD; the clock
    records the batch it received and the RNG state its latents come from, and
    our step gets the same. G's BatchNorm running statistics are left out of the
    comparison: the example also runs G in training mode on its fixed latents
    every 100th iteration (for its sample image), which moves them.
    """
    ours = BaselineTraining(torch.device("cpu"), seed)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(to_example_keys(ours.generator.state_dict()), work / "netG_init.pth")
    torch.save(to_example_keys(ours.discriminator.state_dict()), work / "netD_init.pth")
    record = work / "first_batch.pt"
    _, printed = run_example(
        example, work, timeout=600, runner_args=["--batches", "1", "--record-first-batch", str(record)],
        example_args=[*example_arguments(data, work / "out", CHECK_BATCH, 1, seed),
                      "--netG", str(work / "netG_init.pth"), "--netD", str(work / "netD_init.pth")])
    first = torch.load(record, weights_only=True)
    ours.latent_rng.set_state(first["rng_state"])
    stats = ours.step(first["images"])
    theirs_g, theirs_d = BaselineGenerator(), BaselineDiscriminator()
    load_example_state(theirs_g, work / "out" / "netG_epoch_0.pth")
    load_example_state(theirs_d, work / "out" / "netD_epoch_0.pth")

    def largest_difference(a: torch.nn.Module, b: torch.nn.Module, with_buffers: bool) -> float:
        pairs = list(zip(a.parameters(), b.parameters()))
        if with_buffers:
            pairs += [(x, y) for x, y in zip(a.buffers(), b.buffers()) if x.is_floating_point()]
        return max((x.detach() - y.detach()).abs().max().item() for x, y in pairs)

    losses = EXAMPLE_LOSSES.search(printed)
    return StepCheck(
        batch=len(first["images"]),
        ours=(stats.d_loss, stats.g_loss),
        example=(float(losses.group(1)), float(losses.group(2))) if losses else None,
        g_max_diff=largest_difference(ours.generator, theirs_g, with_buffers=False),
        d_max_diff=largest_difference(ours.discriminator, theirs_d, with_buffers=True),
    )


# ---------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class BaselineInfo:
    """GeneratorInfo for the baseline's generator (evaluation checks resolution and dataset)."""

    z_dim: int
    resolution: int
    kimg: float
    data_md5: str | None
    dataset_sha256: str | None


def run_set(name: str, args: argparse.Namespace, log: logging.Logger, check_example: bool
            ) -> tuple[str, list[Outcome], StepCheck | None]:
    """Prepare the set, train and score every recipe on it; with check_example, the one-step check first."""
    root = Path(tempfile.mkdtemp(prefix=f"scenegan-quality-{name}-"))
    shutil.copytree(REPO / "weights", root / "weights")
    set_overrides = [f"preprocess.resolution={RESOLUTION}", f"preprocess.min_side={RESOLUTION}",
                     f"evaluate.n_samples={args.n_samples}", f"evaluate.n_reference={args.n_reference}",
                     "evaluate.metrics=[fid,kid]", "base.device=cpu"]
    params = load_params(args.params, set_overrides)
    described = prepare_set(name, root, params, args, log)
    print(f"[{name}] {described}", flush=True)
    dataset = open_prepared(root / params.base.paths.prepared)
    check = None
    if args.example:
        # The example reads the very images our recipes train on (the prepared set, as PNGs).
        example_data = write_image_folder(dataset.images, root / "example-data")
        if check_example:
            check = check_example_step(args.example, example_data, root / "example-check")
            print(f"[{name}] {EXAMPLE} check: {check.describe()}", flush=True)
    outcomes = []
    for recipe in args.recipes:
        print(f"[{name}] {recipe}: training for {args.minutes:g} min", flush=True)
        if recipe in (BASELINE, EXAMPLE):
            if recipe == BASELINE:
                generator, kimg, took = train_baseline(root, params, args.minutes * 60, seed=0)
            else:
                generator, kimg, took = train_example(args.example, example_data, root / "example-run",
                                                      args.minutes * 60, seed=0)
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
    return described, outcomes, check


def table(name: str, described: str, outcomes: list[Outcome], minutes: float) -> str:
    lines = [f"**{name}** ({described}); budget {minutes:g} min per recipe", "",
             f"| recipe | G params | kimg reached | train s | FID | KID × 10³ (± std) | FID vs {BASELINE} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    baseline = next((o.report.fid for o in outcomes if o.recipe == BASELINE), None)
    for o in outcomes:
        ratio = f"{o.report.fid / baseline:.2f}x" if baseline else "-"
        kimg = f"{o.kimg:.2f}" if o.kimg < 10 else f"{o.kimg:.1f}"  # short runs: a batch is 0.064 kimg
        lines.append(f"| {o.recipe} | {o.g_parameters / 1e6:.2f} M | {kimg} | {o.train_seconds:.0f} | "
                     f"{o.report.fid:.1f} | {o.report.kid_mean * 1e3:.1f} ± {o.report.kid_std * 1e3:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe and set")
    parser.add_argument("--sets", default="scenes,photos", help="comma-separated: scenes, photos")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of: {', '.join(RECIPES)}")
    parser.add_argument("--photos", type=Path, help="a folder of photos, sub-folders searched (default: the "
                        "wallpaper package); photos below 4x 64 px are used whole, centre square")
    parser.add_argument("--crops", type=int, default=3000,
                        help="images in the photos set: one per small photo, random crops of the big ones for the rest")
    parser.add_argument("--example", type=Path, metavar="PATH/TO/main.py",
                        help=f"also run pytorch/examples' dcgan/main.py (row {EXAMPLE!r}, after {BASELINE!r}) on "
                        "the same data for the same budget, after a one-step equivalence check against our baseline")
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
    if args.example:
        if not args.example.is_file():
            parser.error(f"--example {args.example}: no such file; fetch pytorch/examples and pass its dcgan/main.py")
        args.example = args.example.resolve()
        at = args.recipes.index(BASELINE) + 1 if BASELINE in args.recipes else 0
        args.recipes.insert(at, EXAMPLE)
    sets = [s for s in args.sets.split(",") if s]
    if args.photos and "photos" in sets and not args.photos.is_dir():
        parser.error(f"--photos {args.photos}: not a folder; pass a folder of photos (sub-folders are searched)")
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log = logging.getLogger("bench.quality")
    os.environ.setdefault("SCENEGAN_CACHE_DIR", str(args.cache / "machine"))

    machine = describe_machine(torch.device("cpu")).describe()
    print(f"machine: {machine}", flush=True)
    sections = [f"machine: {machine}", f"command: {' '.join([Path(sys.executable).name, *sys.argv])}", ""]
    for index, name in enumerate(sets):
        described, outcomes, check = run_set(name, args, log, check_example=index == 0)
        if check is not None:
            sections += [f"{EXAMPLE} ({args.example}) against {BASELINE}, on the {name} set: {check.describe()}", ""]
        sections += [table(name, described, outcomes, args.minutes), ""]
        (args.out / "quality.md").write_text("\n".join(sections))
        print("\n" + table(name, described, outcomes, args.minutes) + "\n", flush=True)
        with (args.out / "quality.jsonl").open("a") as f:
            for o in outcomes:
                f.write(json.dumps({"set": name, "recipe": o.recipe, "kimg": o.kimg, "train_seconds": o.train_seconds,
                                    "minutes": args.minutes, "machine": machine, **o.report.to_json()}) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == [EXAMPLE_RUNNER]:
        run_example_child(sys.argv[2:])
    else:
        main()
