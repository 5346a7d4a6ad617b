"""Evaluation throughput: Inception feature extraction in images/s, and what the reference cache buys.

Three measurements on the same images (the default procedural scenes at 64 px,
as the demo evaluates them):
  1. feature extraction, images/s:
       ours         ganlib's loop in fp32: channels_last on CPU, TorchScript profiling executor off
       ours-nchw    ours without channels_last
       ours-bf16    ours with bf16 autocast (features differ slightly; see ganlib/metrics/speed.py)
       ours-auto    what `evaluate.precision: auto` / `channels_last: auto` pick on this machine
       baseline     torch-fidelity's calculate_metrics called directly, on its default
                    settings (DataLoader workers; a new extractor per call): with its own
                    inception-v3-compat when its weights are on disk, else (the output says
                    so) with our registered FID extractor, channels_last off;
  2. reference statistics of the same images: computed (cache miss) vs loaded (hit);
  3. a whole evaluation of a small generator: first (computes the reference) vs
     second (reuses it).
The machine is shared (2 cores, other people's jobs), so every variant runs
`--repeats` times, interleaved, and the best (least disturbed) time is reported
beside the median. Only ratios from one run mean anything.

    .venv/bin/python bench/eval_throughput.py [--images 16] [--repeats 3] [--batch-size 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch_fidelity import calculate_metrics

from ganlib.config import Params, load_params
from ganlib.data.dataset import FORMAT, IMAGES_FILE, MANIFEST_FILE, open_prepared
from ganlib.data.scenes import render_scene
from ganlib.hardware.machine import describe_machine
from ganlib.logs import plain_logger
from ganlib.metrics.evaluate import evaluation_device, score_generator
from ganlib.metrics.extractors import (
    FID_INCEPTION,
    POOL_FEATURES,
    TORCH_FIDELITY_INCEPTION,
    ExtractorSpec,
    build_extractor,
    register_extractors,
    resolve_extractor,
)
from ganlib.metrics.features import dataset_features
from ganlib.metrics.reference import reference_statistics
from ganlib.metrics.sources import PreparedImages
from ganlib.metrics.speed import with_measured_speed
from ganlib.metrics.weight_files import find_is_inception_weights

REPO = Path(__file__).resolve().parents[1]
RESOLUTION = 64
Z_DIM = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="real images (and generated samples) per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    log = plain_logger("bench.eval")
    log.setLevel(logging.ERROR)
    device = evaluation_device(args.device)
    torch.set_grad_enabled(False)
    warnings.filterwarnings("ignore", message=".*(worker processes in total|is deprecated).*")

    with tempfile.TemporaryDirectory(prefix="scenegan-bench-eval-") as scratch:
        root = Path(scratch)
        weights_dir = REPO / load_params(REPO / "params.yaml").base.paths.weights
        params = load_params(REPO / "params.yaml", (
            f"evaluate.device={args.device}", f"evaluate.batch_size={args.batch_size}",
            f"evaluate.n_samples={args.images}", "evaluate.metrics=[fid,kid]", f"base.paths.weights={weights_dir}",
        ))
        write_scene_dataset(root / params.base.paths.prepared, args.images)
        images = open_prepared(root / params.base.paths.prepared).images
        # "ours" is the exact setting: fp32 (channels_last on a CPU); the variants are ratios to it.
        spec = dataclasses.replace(resolve_extractor(params.evaluate, weights_dir, REPO), precision="fp32")
        print(f"machine: {describe_machine(device).describe()}")
        print(f"{args.images} scenes at {RESOLUTION} px, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} threads, extractor {spec.name}, best/median of {args.repeats} interleaved runs\n")

        print("1. feature extraction (images/s, higher is better)")
        # A fresh probe cache: ours-auto measures its choice in this run, as on a new machine.
        variants = extraction_variants(spec, images, args.batch_size, device, params.evaluate, root / "machine-cache")
        relative = report_interleaved(variants, args.repeats, per_second=args.images)
        print(f"   ours is {relative['baseline']:.2f}x as fast as the baseline (median of paired rounds)\n")

        print("2. reference statistics of the same images (seconds)")
        relative = report_interleaved(reference_variants(params, spec, root, log, device), args.repeats)
        print(f"   computed / cached: {1 / relative['cached']:,.0f}x (median of paired rounds)\n")

        print(f"3. whole evaluation, {args.images} generated vs {args.images} real (seconds)")
        relative = report_interleaved(evaluation_variants(params, root, log, device), args.repeats)
        print(f"   first / second: {1 / relative['second']:.2f}x (median of paired rounds)")


@dataclass(frozen=True)
class Variant:
    name: str
    run: Callable[[int], None]  # called with the repeat index
    note: str = ""
    images_per_call: int = 1  # the baseline extracts both of calculate_metrics' inputs


def report_interleaved(variants: list[Variant], repeats: int, per_second: int | None = None) -> dict[str, float]:
    """Run each variant `repeats` times round-robin and print best and median.

    Returns, per variant, its time per image divided by the first variant's, as
    the median of per-round ratios: runs of one round see the same background
    load, so this ratio is steadier than either best or median alone."""
    seconds: dict[str, list[float]] = {v.name: [] for v in variants}
    for repeat in range(repeats):
        for variant in variants:
            started = time.perf_counter()
            variant.run(repeat)
            seconds[variant.name].append(time.perf_counter() - started)
    first = variants[0]
    relative = {}
    for variant in variants:
        times = seconds[variant.name]
        paired = statistics.median(
            (b / variant.images_per_call) / (a / first.images_per_call) for a, b in zip(seconds[first.name], times)
        )
        relative[variant.name] = paired
        if per_second is None:
            print(f"   {variant.name:<12} best {min(times):9.4f} s   median {statistics.median(times):9.4f} s  {variant.note}")
        else:
            rates = [per_second * variant.images_per_call / t for t in times]
            print(f"   {variant.name:<12} best {max(rates):6.2f} img/s   median {statistics.median(rates):6.2f} img/s   "
                  f"speed vs {first.name} {1 / paired:5.2f}x  {variant.note}")
    return relative


def extraction_variants(
    spec: ExtractorSpec, images: np.ndarray, batch_size: int, device: torch.device, auto_settings, probe_cache: Path
) -> list[Variant]:
    """ours: fp32 + channels_last (the exact setting); the others as ratios to it."""
    dataset = PreparedImages(images)
    ours = build_extractor(spec, [POOL_FEATURES], device)
    dataset_features(PreparedImages(images[:2]), ours, batch_size, device)  # first-call allocations
    variants = [Variant("ours", lambda _: dataset_features(dataset, ours, batch_size, device))]

    if spec.name == FID_INCEPTION and device.type == "cpu":
        def variant(name: str, precision: str, channels_last: bool, note: str) -> Variant:
            extractor = build_extractor(dataclasses.replace(spec, precision=precision, channels_last=channels_last),
                                        [POOL_FEATURES], device)
            dataset_features(PreparedImages(images[:2]), extractor, batch_size, device)
            return Variant(name, lambda _: dataset_features(dataset, extractor, batch_size, device), note)

        variants.append(variant("ours-nchw", "fp32", False, "fp32 without channels_last"))
        variants.append(variant("ours-bf16", "bf16", True, "bf16 autocast + channels_last"))
        auto, how = with_measured_speed(spec, auto_settings, device, probe_cache)
        variants.append(variant("ours-auto", auto.precision, auto.channels_last, f"evaluate.precision: auto -> {how}"))

    is_weights, reason = find_is_inception_weights(None, REPO)
    if is_weights is not None:
        name, weights, note = TORCH_FIDELITY_INCEPTION, str(is_weights), "torch-fidelity's own inception-v3-compat"
    else:
        name, weights = spec.name, None if spec.weights_path is None else str(spec.weights_path)
        note = "calculate_metrics with OUR extractor: torch-fidelity's Inception weights are not on disk"
    register_extractors()

    def baseline(_: int) -> None:
        calculate_metrics(
            input1=dataset, input2=dataset, fid=True, feature_extractor=name, feature_extractor_weights_path=weights,
            batch_size=batch_size, cuda=device.type == "cuda", cache=False, verbose=False,
            cpu_channels_last=False,  # reaches our extractor's constructor; torch-fidelity's ignores it
        )

    variants.append(Variant("baseline", baseline, note, images_per_call=2))
    return variants


def reference_variants(params: Params, spec: ExtractorSpec, root: Path, log, device: torch.device) -> list[Variant]:
    dataset = open_prepared(root / params.base.paths.prepared)
    settings = params.evaluate
    make = lambda: build_extractor(spec, [spec.feature_layer], device)  # noqa: E731

    def stats(cache_dir: Path) -> None:
        reference_statistics(dataset, spec, make, 0, 0, settings.batch_size, device, cache_dir, log)

    return [
        Variant("computed", lambda repeat: stats(root / f"miss-cache-{repeat}"), "fresh cache directory each time"),
        Variant("cached", lambda repeat: stats(root / "miss-cache-0"), "the entry written by the first run"),
    ]


def evaluation_variants(params: Params, root: Path, log, device: torch.device) -> list[Variant]:
    generator, info = small_generator()

    def evaluate(cache_name: str) -> None:
        cached = params.model_copy(update={"base": params.base.model_copy(update={
            "paths": params.base.paths.model_copy(update={"fid_cache": str(root / cache_name)})})})
        score_generator(generator, info, cached, log, root, device)

    return [
        Variant("first", lambda repeat: evaluate(f"eval-cache-{repeat}"), "computes the reference statistics"),
        Variant("second", lambda repeat: evaluate(f"eval-cache-{repeat}"), "same data: reuses them"),
    ]


def small_generator():
    """A random DCGAN-like generator at 64 px: its quality is irrelevant, its cost is realistic."""
    torch.manual_seed(0)
    generator = nn.Sequential(
        nn.Unflatten(1, (Z_DIM, 1, 1)),
        nn.ConvTranspose2d(Z_DIM, 128, 4, 1, 0), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Tanh(),
    )

    @dataclass
    class Info:
        z_dim: int = Z_DIM
        resolution: int = RESOLUTION
        kimg: float = 0.0
        data_md5: str | None = None
        dataset_sha256: str | None = None

    return generator, Info()


def write_scene_dataset(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    images = np.stack([np.asarray(render_scene(0, i, RESOLUTION).convert("RGB")) for i in range(count)])
    np.save(root / IMAGES_FILE, images)
    digest = hashlib.sha256((root / IMAGES_FILE).read_bytes()).hexdigest()
    (root / MANIFEST_FILE).write_text(json.dumps(
        {"format": FORMAT, "count": count, "resolution": RESOLUTION, "images_sha256": digest, "data_md5": None}
    ))


if __name__ == "__main__":
    main()
