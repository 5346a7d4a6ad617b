"""`scenegan generate`: which generator file to use, loading it, and handing it to ganlib.generation.

Here rather than in ganlib.generation because finding the published release
reads the publish target (ganlib.publish.targets), and ganlib.generation sits
below publish, which embeds its latent walk in the gallery.

Which generator, in order:
1. `--generator PATH`, when given;
2. the release that publish.target points at: the generator.pt it stores,
   checked against the sha256 its manifest records, because that is the model
   the gallery shows and the publish gate let through;
3. the trained one, `<base.paths.train>/generator.pt`, when nothing is
   published (or the release stores no generator).
The outcome says which was used and why; when the trained generator differs
from the published one it says so, and how to use it instead.
"""

from __future__ import annotations

import hashlib
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ganlib.config import Params
from ganlib.errors import UserFacingError
from ganlib.generation.defaults import DEFAULT_BATCH_SIZE, DEFAULT_FPS, DEFAULT_FRAMES_PER_KEYFRAME, DEFAULT_N
from ganlib.generation.images import GeneratedImages, output_kind, refuse_existing_output, write_images
from ganlib.generation.classes import ALL_CLASSES, image_plan
from ganlib.generation.sampler import GenerationError, check_seed_range
from ganlib.generation.video import video_format_for
from ganlib.generation.walk import WalkFile, check_walk_shape, refuse_existing_file, write_latent_walk
from ganlib.hardware.device import resolve_device
from ganlib.logs import Logger
from ganlib.models.generator_file import GeneratorInfo, load_generator
from ganlib.models.truncation import check_truncation
from ganlib.publish.targets import RELEASES_DIR, PublishTargetError, open_target

# As the train stage writes it and each release stores it (ganlib/publish/rescore.py's
# RELEASE_GENERATOR_FILE and GENERATOR_KEY: not imported, that module loads the metrics stack).
GENERATOR_FILE = "generator.pt"
MANIFEST_GENERATOR_KEY = "generator"


class GeneratorChoiceError(UserFacingError, RuntimeError):
    """No generator to use, or the published one cannot be trusted; the message says what to do."""


@dataclass(frozen=True)
class GeneratorSource:
    """Which generator file was used, and why."""

    kind: Literal["given", "published", "trained"]
    path: str                # the file (for a published one: inside publish.target)
    sha256: str
    release: str | None      # the gallery release it came from (kind "published")
    note: str                # which one this is, and why it was chosen
    alternative: str | None = None   # another generator the user may have meant, and how to use it

    def manifest_record(self) -> dict[str, Any]:
        return {"source": self.kind, "path": self.path, "sha256": self.sha256, "release": self.release}


@dataclass(frozen=True)
class GenerateRequest:
    """What `scenegan generate` was asked for (its flags)."""

    out: Path
    seed: int = 0
    n: int = DEFAULT_N
    truncation: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    generator: Path | None = None
    overwrite: bool = False
    walk_keyframes: int | None = None      # None: images; K: a latent walk through K keyframes
    image_class: str | None = None         # --class NAME | all (a class-conditional generator: ganlib/generation/classes.py)
    frames_per_keyframe: int = DEFAULT_FRAMES_PER_KEYFRAME
    fps: int = DEFAULT_FPS


@dataclass(frozen=True)
class GenerateOutcome:
    source: GeneratorSource
    device: str
    resolution: int
    images: GeneratedImages | None
    walk: WalkFile | None


def generate(request: GenerateRequest, params: Params, root: Path, log: Logger) -> GenerateOutcome:
    """Check the request, choose and load the generator, write the images or the walk."""
    truncation = check_truncation(request.truncation, "--truncation")
    if request.walk_keyframes is None:
        check_seed_range(request.seed, request.n)
        refuse_existing_output(request.out, output_kind(request.out), request.overwrite)
    else:
        check_walk_shape(request.walk_keyframes, request.frames_per_keyframe)
        check_seed_range(request.seed, request.walk_keyframes)
        video_format_for(request.out)
        refuse_existing_file(request.out, request.overwrite)
    device = resolve_device(request.device, "--device")
    source, generator, info = load_chosen_generator(params, root, request.generator, device)
    log.info("generator: %s, %s", source.path, source.note)
    if request.walk_keyframes is not None:
        walk = write_latent_walk(
            generator, z_dim=info.z_dim, seed=request.seed, path=request.out, keyframes=request.walk_keyframes,
            frames_per_keyframe=request.frames_per_keyframe, fps=request.fps, device=device, truncation=truncation,
            batch_size=request.batch_size, overwrite=request.overwrite, log=log,
            label=walk_label(request.image_class, info.classes, request.seed),
        )
        return GenerateOutcome(source, str(device), info.resolution, images=None, walk=walk)
    images = write_images(
        generator, info, request.out, source=source.manifest_record(), seed=request.seed, n=request.n,
        truncation=truncation, batch_size=request.batch_size, device=device, overwrite=request.overwrite,
        regenerate=regenerate_command(request, source, device), log=log, image_class=request.image_class,
    )
    return GenerateOutcome(source, str(device), info.resolution, images=images, walk=None)


def walk_label(requested: str | None, classes: tuple[str, ...], seed: int) -> int | None:
    """The one class a walk is drawn as: --class NAME, else its first keyframe's (seed mod C); None unconditional."""
    if requested == ALL_CLASSES:
        raise GenerationError(f"--class {ALL_CLASSES} makes images of every class; a walk is drawn as one class: "
                              f"give --class NAME ({', '.join(classes) or 'this generator has none'})")
    plan = image_plan(requested, classes, seed, 1)
    return None if plan.labels is None else int(plan.labels[0])


def load_chosen_generator(params: Params, root: Path, given: Path | None,
                          device: torch.device) -> tuple[GeneratorSource, nn.Module, GeneratorInfo]:
    """The generator to use (see the module docstring), loaded on `device`."""
    source, data = choose_generator(params, root, given)
    if source.kind != "published":
        generator, info = load_generator(Path(source.path), device)
        return source, generator, info
    # The release's bytes (already checked against their sha256) through a file: load_generator reads paths.
    with tempfile.TemporaryDirectory(prefix="scenegan-generate-") as scratch:
        path = Path(scratch) / GENERATOR_FILE
        path.write_bytes(data)
        generator, info = load_generator(path, device)
    return source, generator, info


def choose_generator(params: Params, root: Path, given: Path | None) -> tuple[GeneratorSource, bytes]:
    """Which generator file to use and its bytes: --generator, else the published release, else the trained one."""
    trained = root / params.base.paths.train / GENERATOR_FILE
    if given is not None:
        if not given.is_file():
            raise GeneratorChoiceError(
                f"--generator {given}: no such file; give the path of a generator.pt (the train stage writes "
                f"{params.base.paths.train}/{GENERATOR_FILE}; each gallery release stores one)"
            )
        data = given.read_bytes()
        return GeneratorSource("given", str(given), _sha256(data), None, "given with --generator"), data
    published = _published_generator(params, root)
    trained_data = trained.read_bytes() if trained.is_file() else None
    if isinstance(published, tuple):
        source, data = published
        if trained_data is not None and _sha256(trained_data) != source.sha256:
            alternative = f"the trained generator {trained} is not the published one: --generator {trained} uses it"
            source = GeneratorSource(source.kind, source.path, source.sha256, source.release, source.note, alternative)
        return source, data
    if trained_data is None:
        raise GeneratorChoiceError(
            f"no generator to use: {published}, and {trained} does not exist. Train a model first "
            "(`scenegan pipeline` or `dvc repro`), or pass --generator PATH"
        )
    note = f"the trained one ({published})"
    return GeneratorSource("trained", str(trained), _sha256(trained_data), None, note), trained_data


def regenerate_command(request: GenerateRequest, source: GeneratorSource, device: torch.device) -> str:
    """The `scenegan generate` line that makes the same images again (the same file, settings and device)."""
    words = ["scenegan", "generate", "--generator", source.path, "--seed", str(request.seed), "--n", str(request.n),
             "--truncation", f"{request.truncation:g}", "--batch", str(request.batch_size), "--device", device.type,
             "--out", str(request.out)]
    if request.image_class is not None:
        words[-2:-2] = ["--class", request.image_class]
    return shlex.join(words)


def _published_generator(params: Params, root: Path) -> tuple[GeneratorSource, bytes] | str:
    """The current release's generator and its bytes, or why there is none to use (a phrase)."""
    setting = params.publish.target
    try:
        target = open_target(setting, root)
        current = target.current()
    except PublishTargetError as exc:
        raise GeneratorChoiceError(f"{exc} (read for its published generator); pass --generator PATH instead") from None
    if current is None:
        return f"publish.target {setting} holds no published release"
    record = current.manifest.get(MANIFEST_GENERATOR_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return (f"release {current.release} in publish.target {setting} stores no generator: "
                "published before releases kept one")
    # The file name is fixed, never read from the manifest: nothing outside the release directory is read.
    data = target.release_file(current.release, GENERATOR_FILE)
    location = f"{target.location}/{RELEASES_DIR}/{current.release}/{GENERATOR_FILE}"
    if data is None or _sha256(data) != record["sha256"]:
        found = "is missing" if data is None else "does not match the sha256 its manifest records"
        raise GeneratorChoiceError(
            f"{location} {found}; restore the gallery (publish again) or pass --generator PATH"
        )
    note = f"the published release (publish.target {setting})"  # the path names the release
    return GeneratorSource("published", location, record["sha256"], current.release, note), data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

