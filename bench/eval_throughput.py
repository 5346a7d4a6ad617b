"""Evaluation throughput: Inception feature extraction in images/s, and what the reference cache buys.

Three measurements, all in one run on the same images (the default procedural
scenes at 64 px, as the demo evaluates them):
  1. feature extraction, images/s:
       ours       ganlib's extractor loop (channels_last on CPU, no TorchScript re-profiling)
       ours-nchw  the same without channels_last
       baseline   torch-fidelity's calculate_metrics called directly on its default
                  settings (DataLoader workers, NCHW): with its own inception-v3-compat
                  when its weights are on disk, else (said so in the output) with our
                  registered FID extractor, channels_last off;
  2. reference statistics of the same real images, computed (cache miss) vs loaded
     (cache hit), and the ratio;
  3. a whole evaluation of a small generator, first (computes the reference) vs
     second (reuses it), and the ratio.
Only ratios measured in one run are meaningful: the machine is shared and noisy.

    .venv/bin/python bench/eval_throughput.py [--images 32] [--batch-size 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch_fidelity import calculate_metrics

from ganlib.config import load_params
from ganlib.dataset import open_prepared
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
from ganlib.scenes import render_scene
from ganlib.weights import find_is_inception_weights

REPO = Path(__file__).resolve().parents[1]
RESOLUTION = 64
Z_DIM = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="real images (and generated samples) per measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    log = plain_logger("bench.eval")
    log.setLevel(logging.WARNING)
    device = evaluation_device(args.device)
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory(prefix="scenegan-bench-eval-") as scratch:
        root = Path(scratch)
        params = load_params(
            REPO / "params.yaml",
            (
                f"evaluate.device={args.device}", f"evaluate.batch_size={args.batch_size}",
                f"evaluate.n_samples={args.images}", "evaluate.metrics=[fid,kid]",
                f"base.paths.weights={REPO / load_params(REPO / 'params.yaml').base.paths.weights}",
            ),
        )
        write_scene_dataset(root / params.base.paths.prepared, args.images)
        dataset = open_prepared(root / params.base.paths.prepared)
        spec = resolve_extractor(params.evaluate, Path(params.base.paths.weights), REPO)
        print(f"{args.images} scenes at {RESOLUTION} px, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} threads, extractor {spec.name}\n")

        print("1. feature extraction (images/s, higher is better)")
        rows = extraction_rows(spec, dataset.images, args.batch_size, device)
        for row in rows:
            print(f"   {row.name:<10} {row.images_per_s:7.2f} img/s  {row.note}")
        baseline = rows[-1].images_per_s
        print(f"   ours / baseline: {rows[0].images_per_s / baseline:.2f}x\n")

        print("2. reference statistics of the same images")
        cache_dir = root / params.base.paths.fid_cache
        make = lambda: build_extractor(spec, [spec.feature_layer], device)  # noqa: E731
        miss = timed(lambda: reference_statistics(dataset, spec, make, 0, 0, args.batch_size, device, cache_dir, log))
        hit = timed(lambda: reference_statistics(dataset, spec, make, 0, 0, args.batch_size, device, cache_dir, log))
        print(f"   computed {miss:8.3f} s   cached {hit:8.4f} s   ratio {miss / hit:,.0f}x\n")

        print(f"3. whole evaluation ({args.images} generated vs {args.images} real)")
        generator, info = small_generator()
        first = timed(lambda: score_generator(generator, info, params, log, root, device))
        second = timed(lambda: score_generator(generator, info, params, log, root, device))
        print(f"   first {first:8.2f} s   second (cached reference) {second:8.2f} s   ratio {first / second:.2f}x")


@dataclass(frozen=True)
class Row:
    name: str
    images_per_s: float
    note: str


def extraction_rows(spec: ExtractorSpec, images: np.ndarray, batch_size: int, device: torch.device) -> list[Row]:
    dataset = PreparedImages(images)
    warm = PreparedImages(images[: min(4, len(images))])
    ours = build_extractor(spec, [POOL_FEATURES], device)
    dataset_features(warm, ours, batch_size, device)  # first-call allocations, outside the timing
    rows = [Row("ours", len(dataset) / timed(lambda: dataset_features(dataset, ours, batch_size, device)), "")]

    if spec.name == FID_INCEPTION:
        ours.cpu_channels_last = False
        dataset_features(warm, ours, batch_size, device)
        seconds = timed(lambda: dataset_features(dataset, ours, batch_size, device))
        rows.append(Row("ours-nchw", len(dataset) / seconds, "(no channels_last)"))

    is_weights, reason = find_is_inception_weights(None, REPO)
    if is_weights is not None:
        name, weights, note = TORCH_FIDELITY_INCEPTION, str(is_weights), "torch-fidelity's own inception-v3-compat"
    else:
        name, weights = spec.name, None if spec.weights_path is None else str(spec.weights_path)
        note = f"calculate_metrics with OUR extractor ({reason.split(' not found')[0]} not on disk)"
    register_extractors()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")  # its default on 2 cores
        seconds = timed(lambda: calculate_metrics(
            input1=dataset, input2=dataset, fid=True, feature_extractor=name, feature_extractor_weights_path=weights,
            batch_size=batch_size, cuda=device.type == "cuda", cache=False, verbose=False,
            cpu_channels_last=False,  # passed through to our extractor's constructor; torch-fidelity's ignores it
        ))
    # calculate_metrics extracts both inputs: 2x the images, plus FID (negligible at this size).
    rows.append(Row("baseline", 2 * len(dataset) / seconds, note))
    return rows


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
    import hashlib
    import json

    from ganlib.dataset import FORMAT, IMAGES_FILE, MANIFEST_FILE

    root.mkdir(parents=True, exist_ok=True)
    images = np.stack([np.asarray(render_scene(0, i, RESOLUTION).convert("RGB")) for i in range(count)])
    np.save(root / IMAGES_FILE, images)
    digest = hashlib.sha256((root / IMAGES_FILE).read_bytes()).hexdigest()
    (root / MANIFEST_FILE).write_text(json.dumps(
        {"format": FORMAT, "count": count, "resolution": RESOLUTION, "images_sha256": digest, "data_md5": None}
    ))


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
