"""The gallery's sections beyond the samples: latent walk, truncation table, nearest training images.

    read_section_inputs(evaluate_dir, prepared_dir, ...)   truncation.json and memorisation.json, read and checked
    write_sections(upload, generator, ..., inputs)         the walk and the pairs' images into the release;
                                                           what the page shows (PageSections)

    walk_video(generator, z_dim, settings, classes)        the looping walk (ganlib/generation/walk.py), or None
    read_truncation_table(path, z_dim)                     rows of the evaluate stage's truncation.json
    read_nearest_pairs(path, k, z_dim, prepared_dir)       the closest sample/training pairs of memorisation.json
    nearest_images(pairs, generator, ...)                  those samples (regenerated) and training images (read)

Each reader returns its section, or a one-line note saying why the page
leaves it out (the file is absent, was not computed, or describes another
generator or dataset); the page shows the note in its place. Nothing here
fails the publish: these sections explain a model, they do not gate it.

The images of a pair are found again, never copied from evaluation: sample i
is regenerated from fixed_latents(n, z_dim, seed)[i] (the evaluate stage's
latents, ganlib/models/sampling.py) on the CPU in fp32, as every gallery
image is, and training image j is row j of the prepared dataset's images.npy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganlib.config import PublishParams
from ganlib.data.dataset import PreparedDatasetError, open_prepared
from ganlib.formatting import significant
from ganlib.generation.walk import WalkVideo, latent_walk_video
from ganlib.metrics.report import MEMORISATION_FILE, MEMORISATION_FORMAT, TRUNCATION_FILE, TRUNCATION_FORMAT
from ganlib.models.sampling import fixed_latents
from ganlib.publish.images import encode_image, generate_all
from ganlib.publish.page import ImageRef, NearestSection, PairRef, TruncationTable, VideoRef
from ganlib.publish.sample_classes import EvaluationLabels
from ganlib.publish.targets import GalleryUpload

TRUNCATION_COLUMNS = (("psi", "psi"), ("fid", "FID ↓"), ("kid_mean", "KID ↓"), ("precision", "precision ↑"),
                      ("recall", "recall ↑"), ("density", "density"), ("coverage", "coverage ↑"))
# memorisation.json's spaces, in the order the page shows them, with their headings.
NEAREST_SPACES = (("features", "in Inception features (what FID sees)"), ("pixels", "in 32 x 32 pixels"))


@dataclass(frozen=True)
class NearestPair:
    sample: int          # the evaluated sample's index (its latent's row)
    training: int        # row of the prepared dataset
    distance: float


@dataclass(frozen=True)
class NearestSpace:
    name: str            # features | pixels
    heading: str
    description: str     # what the distance is, as memorisation.json says
    memorisation: str    # the space's figure and threshold, in words
    pairs: list[NearestPair]


@dataclass(frozen=True)
class NearestPairs:
    spaces: list[NearestSpace]
    n_samples: int       # of the evaluation: fixed_latents(n_samples, z_dim, seed)
    seed: int
    baseline: float


def walk_video(
    generator: nn.Module, z_dim: int, settings: PublishParams, classes: tuple[str, ...] = (),
) -> WalkVideo | None:
    """The page's latent walk (None when publish.walk_keyframes is 0): CPU, fp32, seeds publish.seed onwards.

    A class-conditional generator walks as its first class throughout."""
    if settings.walk_keyframes == 0:
        return None
    return latent_walk_video(
        generator, z_dim=z_dim, seed=settings.seed, keyframes=settings.walk_keyframes,
        frames_per_keyframe=settings.walk_frames_per_keyframe, fps=settings.walk_fps, device=torch.device("cpu"),
        batch_size=settings.batch_size, label=0 if classes else None,
    )


def read_truncation_table(path: Path, z_dim: int, shown: str | None = None) -> TruncationTable | str:
    """The truncation table of truncation.json, or the note that replaces it (naming the file as `shown`)."""
    record = _read_record(path, TRUNCATION_FORMAT, shown)
    path = shown or path
    if isinstance(record, str):
        return f"No truncation table: {record}."
    rows = record.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        return f"No truncation table: {path} holds no rows; re-run the evaluate stage."
    if record.get("z_dim") not in (None, z_dim):
        return (f"No truncation table: {path} was measured on a generator with z_dim {record.get('z_dim')}, "
                f"not {z_dim}; re-run the evaluate stage.")
    caption = (f"{record.get('n_samples')} samples per psi (latent i scaled by psi), {record.get('n_reference')} real "
               f"images, {record.get('extractor')} features; precision/recall/density/coverage with k = "
               f"{record.get('prdc_k')}. psi 1.0 is the evaluation above; psi < 1 trades diversity for fidelity.")
    if len(rows) == 1:
        caption += " Only psi 1.0 was measured: list more values in evaluate.truncation, e.g. [1.0, 0.8, 0.6]."
    return TruncationTable(
        columns=[label for _, label in TRUNCATION_COLUMNS],
        rows=[[str(row.get("psi")), *(_cell(row.get(key)) for key, _ in TRUNCATION_COLUMNS[1:])] for row in rows],
        caption=caption,
    )


def read_nearest_pairs(
    path: Path, k: int, z_dim: int, prepared_dir: Path, shown: str | None = None,
) -> NearestPairs | str:
    """Up to `k` closest pairs per space from memorisation.json, checked against this generator and dataset.

    Notes name the file as `shown` (a path relative to the project, say) rather than as `path`.
    """
    if k == 0:
        return "No nearest training images: publish.nearest_pairs is 0."
    record = _read_record(path, MEMORISATION_FORMAT, shown)
    path = shown or path
    if isinstance(record, str):
        return f"No nearest training images: {record}."
    if not record.get("computed"):
        return f"No nearest training images: the memorisation check did not run ({record.get('reason')})."
    samples, training = record.get("samples") or {}, record.get("training") or {}
    if samples.get("z_dim") != z_dim or samples.get("psi", 1.0) != 1.0:
        return (f"No nearest training images: {path} was made for a generator with z_dim {samples.get('z_dim')}, "
                f"not {z_dim}; re-run the evaluate stage.")
    try:
        dataset = open_prepared(prepared_dir)
    except PreparedDatasetError:   # its message names a path of this machine: not for a published page
        return "No nearest training images: the prepared dataset cannot be read; re-run the preprocess stage."
    if training.get("dataset_sha256") != dataset.content_hash:
        return (f"No nearest training images: {path} was measured against other prepared data than "
                "the training images now prepared; re-run the evaluate stage.")
    spaces = []
    for name, heading in NEAREST_SPACES:
        space = (record.get("spaces") or {}).get(name)
        if not isinstance(space, dict):
            continue
        try:
            pairs = [NearestPair(int(p["sample"]), int(p["training"]), float(p["distance"]))
                     for p in space.get("closest_pairs", [])[:k]]
            outside = any(not 0 <= p.sample < int(samples["n"]) or not 0 <= p.training < dataset.count for p in pairs)
        except (KeyError, TypeError, ValueError):
            return f"No nearest training images: {path} has malformed closest pairs; re-run the evaluate stage."
        if outside:
            return f"No nearest training images: {path} names images outside the evaluation or the dataset."
        spaces.append(NearestSpace(
            name=name, heading=heading, description=str(space.get("description")),
            memorisation=(f"memorisation {significant(space.get('memorisation'), 3)} (fresh images score about "
                          f"{significant(record.get('baseline'), 3)}, copies 1): {space.get('flagged')} of "
                          f"{samples.get('n')} samples are within {significant(space.get('threshold'), 4)} of a "
                          "training image"),
            pairs=pairs,
        ))
    if not spaces:
        return f"No nearest training images: {path} lists no closest pairs."
    return NearestPairs(spaces, n_samples=int(samples["n"]), seed=int(samples["seed"]),
                        baseline=float(record.get("baseline") or 0.0))


def nearest_images(
    nearest: NearestPairs, generator: nn.Module, z_dim: int, resolution: int, prepared_dir: Path, batch_size: int,
    labels: EvaluationLabels | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """uint8 [R, R, 3] images by index: the pairs' samples (regenerated, as the classes evaluation drew them as)
    and training images (read)."""
    sample_ids = sorted({pair.sample for space in nearest.spaces for pair in space.pairs})
    training_ids = sorted({pair.training for space in nearest.spaces for pair in space.pairs})
    # Latent i does not depend on how many are drawn (fixed_latents): draw up to the largest index only.
    latents = fixed_latents(sample_ids[-1] + 1, z_dim, nearest.seed)[sample_ids]
    sample_labels = None if labels is None else labels.of(sample_ids, nearest.n_samples, nearest.seed)
    samples = generate_all(generator, latents, resolution, batch_size, sample_labels)
    images = open_prepared(prepared_dir).images
    return (dict(zip(sample_ids, samples)),
            {index: np.ascontiguousarray(images[index]) for index in training_ids})


def _read_record(path: Path, expected_format: str, shown: str | None) -> dict[str, Any] | str:
    """The JSON object at `path`, or why not (as a note's clause, naming the file as `shown`)."""
    name = shown or path
    if not path.is_file():
        return f"{name} is absent (the evaluate stage writes it)"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{name} is unreadable ({exc}); re-run the evaluate stage"
    if not isinstance(record, dict) or record.get("format") != expected_format:
        return f"{name} is not a {expected_format} file; re-run the evaluate stage"
    return record


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return significant(value, 4, scientific_from=1e5)
    return str(value)


@dataclass(frozen=True)
class SectionInputs:
    """What the evaluate stage left for the page's sections (or the notes that replace them)."""

    truncation: TruncationTable | str
    nearest: NearestPairs | str
    prepared_dir: Path
    labels: EvaluationLabels | None = None   # a conditional generator's sample classes, as evaluation drew them


@dataclass(frozen=True)
class PageSections:
    """The sections as the page shows them, and the release files they added."""

    walk: VideoRef | None
    walk_file: str | None          # the walk's path inside the release (None: no walk)
    truncation: TruncationTable | None
    nearest: list[NearestSection]
    notes: dict[str, str]          # section -> the one line shown in its place


def read_section_inputs(
    root: Path, evaluate: str, prepared: str, settings: PublishParams, z_dim: int,
    labels: EvaluationLabels | None = None,
) -> SectionInputs:
    """The sections' files under `root` (base.paths.evaluate and .prepared); notes name them relative to it,
    so a published page shows no path of the machine that published it."""
    truncation, memorisation = f"{evaluate}/{TRUNCATION_FILE}", f"{evaluate}/{MEMORISATION_FILE}"
    return SectionInputs(
        truncation=read_truncation_table(root / truncation, z_dim, shown=truncation),
        nearest=read_nearest_pairs(root / memorisation, settings.nearest_pairs, z_dim, root / prepared,
                                   shown=memorisation),
        prepared_dir=root / prepared,
        labels=labels,
    )


def write_sections(
    upload: GalleryUpload, generator: nn.Module, z_dim: int, resolution: int, settings: PublishParams,
    inputs: SectionInputs, classes: tuple[str, ...] = (),
) -> PageSections:
    """Render the walk and the nearest pairs' images into the release; the page's view of all three sections."""
    notes: dict[str, str] = {}
    video = walk_video(generator, z_dim, settings, classes)
    walk = walk_file = None
    if video is None:
        notes["walk"] = "No latent walk: publish.walk_keyframes is 0."
    else:
        walk_file = f"walk{video.suffix}"
        upload.add(walk_file, video.data)
        last = video.seed + video.keyframes - 1
        walk = VideoRef(walk_file, video.width, video.height, video.mime_type, (
            f"A loop through {video.keyframes} keyframes, the latents of seeds {video.seed} to {last} (the images "
            f"of scenegan generate --seed {video.seed} --n {video.keyframes}), by slerp: {video.frames_per_keyframe} "
            f"frames each at {video.fps} fps, {video.duration_s:.1f} s, shown {video.scale}x"
            + (f", all as class {classes[0]} (scenegan generate --class {classes[0]} --walk {video.keyframes})"
               if classes else "") + f". {video.reason}."))
    truncation = inputs.truncation if isinstance(inputs.truncation, TruncationTable) else None
    if truncation is None:
        notes["truncation"] = str(inputs.truncation)
    nearest: list[NearestSection] = []
    if isinstance(inputs.nearest, NearestPairs):
        nearest = _write_nearest(upload, inputs.nearest, generator, z_dim, resolution, settings, inputs.prepared_dir,
                                 inputs.labels)
    else:
        notes["nearest"] = inputs.nearest
    return PageSections(walk, walk_file, truncation, nearest, notes)


def _write_nearest(
    upload: GalleryUpload, pairs: NearestPairs, generator: nn.Module, z_dim: int, resolution: int,
    settings: PublishParams, prepared_dir: Path, labels: EvaluationLabels | None,
) -> list[NearestSection]:
    samples, training = nearest_images(pairs, generator, z_dim, resolution, prepared_dir, settings.batch_size, labels)
    ext, r = settings.image_format, resolution
    sample_refs = {i: ImageRef(f"nearest/sample_{i:05d}.{ext}", r, r, f"sample {i}") for i in samples}
    training_refs = {j: ImageRef(f"nearest/training_{j:06d}.{ext}", r, r, f"training image {j}") for j in training}
    for i, image in samples.items():
        upload.add(sample_refs[i].path, encode_image(image, ext))
    for j, image in training.items():
        upload.add(training_refs[j].path, encode_image(image, ext))
    return [
        NearestSection(
            heading=f"Closest pairs {space.heading}", summary=space.memorisation, description=space.description,
            pairs=[PairRef(sample_refs[p.sample], training_refs[p.training],
                           f"sample {p.sample} · training image {p.training} · distance {significant(p.distance, 4)}")
                   for p in space.pairs],
        )
        for space in pairs.spaces
    ]
