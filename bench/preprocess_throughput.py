"""Preprocess throughput: images/s of `prepare_dataset`, and what draft mode and workers buy.

Two inputs, each prepared with workers=1 and workers=2 in the same run:
  (a) small PNGs: the default procedural scenes at 64 px (the demo's dataset);
  (b) large real JPEG photos (up to 5312 px): the CC0/CC-BY Debian package
      lomiri-wallpapers-16.04, fetched once with
          cd /tmp && apt-get download lomiri-wallpapers-16.04 && dpkg-deb -x lomiri-wallpapers*.deb /tmp/wall
For (b) it also times decoding each photo with and without JPEG draft mode
(the same resize, crop and colour conversion either way) and reports how far
apart the two results are. Only ratios measured in one run are meaningful:
the machine is shared and timings are noisy.

    .venv/bin/python bench/preprocess_throughput.py [--small 2000] [--copies 4] [--resolution 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ganlib.config import PreprocessParams, load_params
from ganlib.data import images
from ganlib.data.preprocess import prepare_dataset
from ganlib.data.scenes import render_scene, scene_png_bytes
from ganlib.logs import plain_logger

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path("/tmp/wall/usr/share/backgrounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="number of 64-px scene PNGs")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of large JPEG photos")
    parser.add_argument("--copies", type=int, default=4, help="copies of each photo (dedupe off), for a longer run")
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    log = plain_logger("bench.preprocess")
    log.setLevel(logging.WARNING)  # the stage's own progress lines would drown the table

    with tempfile.TemporaryDirectory(prefix="scenegan-bench-") as scratch:
        scratch = Path(scratch)
        small_raw = scratch / "small" / "data" / "raw"
        write_scenes(small_raw, args.small)
        print(f"(a) {args.small} scene PNGs, 64 px -> {args.resolution} px")
        compare_workers(scratch / "small", args.resolution, log)

        photos = sorted(args.photos.glob("*.jpg")) if args.photos.is_dir() else []
        if not photos:
            print(f"(b) skipped: no JPEGs in {args.photos} (see the module docstring to fetch them)")
            return
        photo_raw = scratch / "photos" / "data" / "raw"
        photo_raw.mkdir(parents=True)
        for copy in range(args.copies):
            for photo in photos:
                shutil.copyfile(photo, photo_raw / f"{copy}_{photo.name}")
        largest = max(Image.open(p).size for p in photos)
        print(f"\n(b) {len(photos)} photos x {args.copies} copies, up to {largest[0]}x{largest[1]} px -> {args.resolution} px")
        compare_workers(scratch / "photos", args.resolution, log)
        progressive = sum(bool(Image.open(p).info.get("progressive")) for p in photos)
        print(f"  draft vs full decode, as shipped ({progressive}/{len(photos)} progressive JPEGs):")
        compare_draft(photos, args.resolution)
        # Cameras and phones write baseline JPEGs, where DCT scaling skips most of the work.
        baseline = scratch / "baseline"
        baseline.mkdir()
        for photo in photos:
            with Image.open(photo) as im:
                im.save(baseline / photo.name, quality=92, exif=im.getexif())
        print("  draft vs full decode, re-encoded as baseline JPEG (quality 92, as a camera writes):")
        compare_draft(sorted(baseline.glob("*.jpg")), args.resolution)


def write_scenes(raw: Path, count: int) -> None:
    raw.mkdir(parents=True)
    for index in range(count):
        (raw / f"scene-{index:06d}.png").write_bytes(scene_png_bytes(render_scene(0, index, 64)))


def compare_workers(root: Path, resolution: int, log: logging.Logger) -> None:
    rates = {}
    for workers in (1, 2):
        params = load_params(REPO / "params.yaml", overrides=[
            f"preprocess.resolution={resolution}",
            f"preprocess.min_side={resolution}",
            "preprocess.dedupe=false",
            f"preprocess.workers={workers}",
        ])
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        summary = prepare_dataset(params, log, root=root)
        seconds = time.perf_counter() - started
        cpu_ms = 1000 * (cpu_seconds() - cpu_before) / summary.scanned
        rates[workers] = summary.scanned / seconds
        print(
            f"  workers={workers}: {summary.count} images in {seconds:6.2f} s = {rates[workers]:7.1f} img/s "
            f"(end to end); CPU {cpu_ms:5.1f} ms/img (this process + workers)"
        )
    # On a shared machine the wall-clock ratio says as much about the neighbours
    # as about us; CPU ms/img staying flat shows the parallel overhead is small.
    print(f"  parallel / single = {rates[2] / rates[1]:.2f}x (cores idle now: {idle_cores():.1f} of {os.cpu_count()})")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the spawned workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def idle_cores(interval: float = 1.0) -> float:
    """Cores not busy over `interval` seconds (from /proc/stat; nan where unavailable)."""
    def idle_and_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)
    try:
        idle0, total0 = idle_and_total()
        time.sleep(interval)
        idle1, total1 = idle_and_total()
    except OSError:
        return float("nan")
    return (os.cpu_count() or 1) * (idle1 - idle0) / max(total1 - total0, 1)


def compare_draft(photos: list[Path], resolution: int) -> None:
    cfg = load_params(REPO / "params.yaml", overrides=[f"preprocess.resolution={resolution}"]).preprocess
    with_draft, seconds_draft = time_decodes(photos, lambda p: images.decode_image(p, cfg).image)
    without, seconds_full = time_decodes(photos, lambda p: decode_without_draft(p, cfg))
    difference = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(with_draft, without)])
    print(
        f"    one process, per photo: draft {1000 * seconds_draft / len(photos):6.1f} ms, "
        f"full decode {1000 * seconds_full / len(photos):6.1f} ms -> draft is {seconds_full / seconds_draft:.1f}x faster; "
        f"mean |difference| {difference:.2f} / 255"
    )


def decode_without_draft(path: Path, cfg: PreprocessParams) -> np.ndarray:
    """The same pipeline as images.decode_image, minus draft()."""
    with Image.open(path) as im:
        im.load()
        rgb = images.to_rgb(ImageOps.exif_transpose(im), cfg.background)
        return np.asarray(images.resize_center_crop(rgb, cfg.resolution))


def time_decodes(photos: list[Path], decode) -> tuple[list[np.ndarray], float]:
    started = time.perf_counter()
    results = [decode(photo) for photo in photos]
    return results, time.perf_counter() - started


if __name__ == "__main__":  # required: decoder workers are spawned and re-import this module
    main()
