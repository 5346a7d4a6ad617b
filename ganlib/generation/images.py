"""N images from a generator as PNG files with a manifest.json, into a directory or a .zip, whole or not at all.

    write_images(generator, info, out, source=..., seed=S, n=N, ...) -> GeneratedImages

Image i uses seed S + i and is named `seed{S+i:04d}.png` (sampler.py says why
that makes any single image reproducible alone); a class-conditional
generator's images are named `seed{S+i:04d}-<class>.png` (classes.py says which
class each one is). manifest.json beside the
images records what a reader needs to make them again or trace them: every
file with its seed and sha256, the generator (where it came from, its sha256,
architecture, kimg) and the dataset version it was trained on (data_md5, the
DVC md5 its generator file records), the truncation, batch size, device,
precision and the software versions, and the command that regenerates them.
It holds no timestamp: the same settings on the same machine give the same
bytes, manifest included.

`out` ending in .zip gives one archive (entries under a folder named after
it, stored uncompressed: PNGs do not compress further, with fixed dates);
anything else is a directory. A directory is built beside its destination
and swapped in when complete (ganlib.io.atomic.staged_directory); a zip is
written to a temporary beside it and renamed into place. A failed or
interrupted run leaves neither half-written. An existing non-empty
destination is refused unless overwrite=True, which replaces it whole.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganlib.generation.classes import ImagePlan, image_plan
from ganlib.generation.defaults import DEFAULT_BATCH_SIZE
from ganlib.generation.sampler import PRECISION, GenerationError, check_seed_range, render, seed_latents
from ganlib.io.atomic import DiskFullError, fresh_directory, fsync_directory, staged_directory
from ganlib.logs import Logger
from ganlib.models.generator_file import GeneratorInfo
from ganlib.models.truncation import check_truncation
from ganlib.progress import Progress

FORMAT = "scenegan-generated/1"
MANIFEST_FILE = "manifest.json"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no build time in the archive
SOFTWARE = ("scenegan", "torch", "numpy", "pillow")


@dataclass(frozen=True)
class GeneratedImages:
    """What write_images wrote: where, which seeds and files, and the manifest it wrote beside them."""

    out: Path
    kind: Literal["directory", "zip"]
    n: int
    first_seed: int
    last_seed: int
    files: list[str]
    size_bytes: int
    seconds: float
    manifest: dict[str, Any] = field(repr=False)

    @property
    def images_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0


def image_name(seed: int, class_name: str | None = None) -> str:
    """`seed1234.png` (`seed1234-dawn.png` for a class): the same name for the same image, whatever the run."""
    return f"seed{seed:04d}.png" if class_name is None else f"seed{seed:04d}-{class_name}.png"


def output_kind(out: Path) -> Literal["directory", "zip"]:
    return "zip" if Path(out).suffix.lower() == ".zip" else "directory"


def write_images(
    generator: nn.Module,
    info: GeneratorInfo,
    out: Path,
    *,
    source: Mapping[str, Any],
    seed: int,
    n: int,
    truncation: float = 1.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device = torch.device("cpu"),
    overwrite: bool = False,
    regenerate: str | None = None,
    log: Logger | None = None,
    image_class: str | None = None,
) -> GeneratedImages:
    """Images of seeds seed .. seed+n-1 from `generator` (eval mode, on `device`) as PNGs + manifest.json in `out`.

    `source` describes where the generator file came from (its path, sha256,
    kind, release) and goes into the manifest with `info`; `regenerate` is the
    command line that makes the same images, recorded as given. `image_class`: --class (classes.py).
    """
    out = Path(out)
    if n < 1:
        raise GenerationError(f"--n must be at least 1, got {n}")
    check_seed_range(seed, n)
    truncation = check_truncation(truncation, "--truncation")
    kind = output_kind(out)
    plan = image_plan(image_class, info.classes, seed, n)
    refuse_existing_output(out, kind, overwrite)
    started = time.perf_counter()
    members = _image_members(generator, info, plan, truncation, batch_size, device, log)
    settings = {"seed": seed, "n": n, "truncation": truncation, "batch_size": batch_size, "device": str(device),
                "precision": PRECISION}
    if info.classes:
        settings["classes"] = {"generator": list(info.classes), "chosen": plan.how}
    if kind == "zip":
        files, size, manifest = _write_zip(out, members, info, source, settings, regenerate)
    else:
        files, size, manifest = _write_directory(out, members, info, source, settings, regenerate)
    return GeneratedImages(out=out, kind=kind, n=len(plan.seeds), first_seed=seed, last_seed=seed + n - 1, files=files,
                           size_bytes=size, seconds=time.perf_counter() - started, manifest=manifest)


def refuse_existing_output(out: Path, kind: Literal["directory", "zip"], overwrite: bool) -> None:
    """GenerationError (naming --out) for a destination that may not be replaced; nothing is changed."""
    if kind == "zip":
        if out.is_dir():
            raise GenerationError(f"--out {out}: is a directory; a .zip output is a file: choose another name")
        if out.exists() and not overwrite:
            raise GenerationError(f"--out {out}: already exists; choose another name or pass --overwrite to replace it")
        return
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out}: exists and is not a directory; choose another output directory")
    if out.is_dir() and _is_working_directory_or_above(out):
        raise GenerationError(
            f"--out {out}: is the working directory (or holds it); choose a new directory for the images")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GenerationError(
            f"--out {out}: is not empty; choose a new or empty directory, or pass --overwrite to replace it "
            "and everything in it"
        )


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes, with no metadata (no timestamps): the same pixels give the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def software_versions() -> dict[str, str | None]:
    """The installed versions that decide the pixels and their encoding (None: not installed as a package)."""
    versions: dict[str, str | None] = {}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _image_members(generator: nn.Module, info: GeneratorInfo, plan: ImagePlan, truncation: float, batch_size: int,
                   device: torch.device, log: Logger | None) -> Iterator[tuple[str, int, str | None, bytes]]:
    """(file name, seed, class, PNG bytes) for each image of the plan, in order, generated batch by batch."""
    first, n = plan.seeds[0], len(set(plan.seeds))
    latents = seed_latents(first, n, info.z_dim)[[seed - first for seed in plan.seeds]]
    index = 0
    progress = Progress(log, total=len(plan.seeds), what="generate", unit="images") if log is not None else None
    try:
        for batch in render(generator, latents, info.resolution, batch_size, device, truncation, plan.labels):
            for image in batch:
                seed, class_name = plan.seeds[index], plan.class_names[index]
                yield image_name(seed, class_name), seed, class_name, encode_png(image)
                index += 1
            if progress is not None:
                progress.advance(len(batch))
    finally:
        if progress is not None:
            progress.close()


def _manifest(entries: list[dict[str, Any]], info: GeneratorInfo, source: Mapping[str, Any],
              settings: Mapping[str, Any], regenerate: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        **settings,
        "dataset_version": info.data_md5,   # the DVC md5 of the data the generator was trained on
        "generator": {
            **source,
            "arch": info.arch,
            "resolution": info.resolution,
            "z_dim": info.z_dim,
            "kimg": info.kimg,
            "data_md5": info.data_md5,
            "dataset_sha256": info.dataset_sha256,
            "params_fingerprint": info.params_fingerprint,
            "classes": list(info.classes),
        },
        "latents": "image i: numpy.random.RandomState(seed + i).randn(1, z_dim), times truncation",
        "regenerate": regenerate,
        "software": software_versions(),
        "images": entries,
    }


def _entry(name: str, seed: int, class_name: str | None, data: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": name, "seed": seed}
    if class_name is not None:
        entry["class"] = class_name
    return {**entry, "sha256": hashlib.sha256(data).hexdigest()}


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _write_directory(out: Path, members: Iterator[tuple[str, int, str | None, bytes]], info: GeneratorInfo,
                     source: Mapping[str, Any], settings: Mapping[str, Any],
                     regenerate: str | None) -> tuple[list[str], int, dict[str, Any]]:
    entries, size = [], 0
    with staged_directory(out) as staging:
        for name, seed, class_name, data in members:
            (staging / name).write_bytes(data)
            entries.append(_entry(name, seed, class_name, data))
            size += len(data)
        manifest = _manifest(entries, info, source, settings, regenerate)
        manifest_data = _manifest_bytes(manifest)
        (staging / MANIFEST_FILE).write_bytes(manifest_data)
    return [entry["file"] for entry in entries] + [MANIFEST_FILE], size + len(manifest_data), manifest


def _write_zip(out: Path, members: Iterator[tuple[str, int, str | None, bytes]], info: GeneratorInfo,
               source: Mapping[str, Any], settings: Mapping[str, Any],
               regenerate: str | None) -> tuple[list[str], int, dict[str, Any]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.stem
    # A temporary directory beside `out` (same filesystem), so the finished archive is renamed into place.
    scratch = fresh_directory(out.parent, f".{out.name}.partial-{os.getpid()}-")
    entries: list[dict[str, Any]] = []
    try:
        partial = scratch / out.name
        with open(partial, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, seed, class_name, data in members:
                    archive.writestr(_zip_entry(f"{folder}/{name}"), data)
                    entries.append(_entry(name, seed, class_name, data))
                manifest = _manifest(entries, info, source, settings, regenerate)
                archive.writestr(_zip_entry(f"{folder}/{MANIFEST_FILE}"), _manifest_bytes(manifest))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, out)
        fsync_directory(out.parent)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(
            f"{out}: could not write this zip: {os.strerror(exc.errno)}; no partial file was left. "
            "Free some space (or choose another --out) and run again", out, exc.errno,
        ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = [f"{folder}/{entry['file']}" for entry in entries] + [f"{folder}/{MANIFEST_FILE}"]
    return files, out.stat().st_size, manifest


def _zip_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    entry.compress_type = zipfile.ZIP_STORED
    entry.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
    return entry


def _is_working_directory_or_above(path: Path) -> bool:
    here, target = Path.cwd().resolve(), path.resolve()
    return here == target or target in here.parents
