"""The publish stage's gallery: the EMA generator's samples as a static gallery, gated on FID.

The stage as DVC runs it is ganlib/publish/run.py: this gallery, then the
model package (ganlib/publish/model_package.py). `publish_gallery` is the
gallery alone: it loads `generator.pt` and the evaluate stage's metrics.json
(with evaluation.json beside it), decides whether to publish (`publish.gate`;
the rule and the re-scoring of a release measured under other settings:
ganlib/publish/gate.py), writes a new release to `publish.target` (layout and
failure behaviour: see ganlib/publish/targets.py), generator.pt included so
that a later gate can re-score it, and records what it did, with the gate's
numbers, in `base.paths.publish_record`. A skipped publish leaves the target
byte for byte as it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from ganlib.data.dataset import open_prepared
from ganlib.config import Params, PublishParams
from ganlib.formatting import iso_utc
from ganlib.io.atomic import atomic_write_json
from ganlib.logs import Logger
from ganlib.metrics.errors import EvaluationError
from ganlib.metrics.report import METRICS_FILE, read_evaluation
from ganlib.models.generator_file import load_generator
from ganlib.models.sampling import fixed_latents, grid_row_labels
from ganlib.publish.fid_settings import MANIFEST_KEY, fid_settings
from ganlib.publish.gate import GateDecision, PublishError, decide_gate
from ganlib.publish.images import contact_sheet, encode_image, generate_all, generate_images, interpolation_latents
from ganlib.publish.page import ClassRow, GalleryPage, HistoryEntry, ImageRef, render_gallery_html
from ganlib.publish.sample_classes import EvaluationLabels
from ganlib.publish.rescore import GENERATOR_KEY, RELEASE_GENERATOR_FILE, generator_record, rescore_published
from ganlib.publish.sections import SectionInputs, read_section_inputs, write_sections
from ganlib.publish.targets import (
    GALLERY_FORMAT,
    INDEX_FILE,
    MANIFEST_FILE,
    GalleryTarget,
    GalleryUpload,
    PublishedGallery,
    new_release_id,
    open_target,
    sha256_hex,
)

GENERATOR_FILE = "generator.pt"
SECTIONS_SHOWN = ("train", "evaluate")  # the params a reader needs to reproduce the samples' model
KIMG_TOLERANCE = 1e-6


class GeneratorFacts(Protocol):
    """What the page and manifest say about the generator (ganlib.models.generator_file.GeneratorInfo)."""

    z_dim: int
    resolution: int
    kimg: float
    arch: str
    data_md5: str | None
    dataset_sha256: str | None
    params_fingerprint: str | None
    classes: tuple[str, ...]   # a class-conditional generator's class names; () unconditional


@dataclass(frozen=True)
class PublishReport:
    status: Literal["published", "skipped"]
    reason: str
    target: str                    # publish.target as configured
    index: str                     # the gallery page: <target>/index.html
    release: str | None            # the release the target now points at (None: nothing published)
    fid: float | None              # this run's FID (None: not evaluated)
    previous_release: str | None
    previous_fid: float | None     # as the previous release recorded it
    manifest_sha256: str | None    # of <target>/manifest.json after this run
    checkpoint_kimg: float
    files: int                     # files written (0 when skipped)
    date: str                      # UTC, ISO 8601
    # better_fid's numbers (ganlib.publish.gate.FidComparison as a dict): both FIDs and
    # bands, the previous FID as recorded and as re-scored, the settings, the rule applied.
    # None when nothing was compared (gate always, or no earlier FID).
    comparison: dict[str, Any] | None = None
    walk: str | None = None        # the latent walk video published, from the target root (None: none)

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def publish_gallery(params: Params, log: Logger, root: Path) -> PublishReport:
    """Load the trained EMA generator and publish (or skip) its gallery (the stage without the model package)."""
    path = root / params.base.paths.train / GENERATOR_FILE
    # CPU and fp32 whatever base.device says: the published bytes must not
    # depend on the machine that publishes them.
    generator, info = load_generator(path, torch.device("cpu"))
    # Kept in the release (the bytes the generator was loaded from), so that a
    # later better_fid gate can re-score it under its own settings.
    generator_file = path.read_bytes()
    return publish_generator(generator, info, params, log, root, now=datetime.now(timezone.utc),
                             generator_file=generator_file)


def publish_generator(
    generator: nn.Module,
    info: GeneratorFacts,
    params: Params,
    log: Logger,
    root: Path,
    now: datetime,
    generator_file: bytes | None = None,
) -> PublishReport:
    """Gate, publish and record for an already loaded generator (the stage minus the file loading).

    `generator_file`: the generator.pt bytes, stored in the release; None
    stores none (a later better_fid gate then cannot re-score this release).
    """
    settings = params.publish
    metrics_path = root / params.base.paths.evaluate / METRICS_FILE
    metrics = read_metrics(metrics_path)
    target = open_target(settings.target, root)
    current = target.current()
    mismatches = metrics_mismatches(metrics, info) if metrics is not None else []
    if mismatches and settings.gate == "better_fid":
        raise PublishError(
            f"{metrics_path} does not describe {GENERATOR_FILE}: {'; '.join(mismatches)}. "
            "Re-run the evaluate stage (`dvc repro evaluate`) before a gated publish."
        )
    decision = decide_gate(
        settings.gate, metrics, current, metrics_path,
        rescore=lambda published: rescore_published(target, published, info.resolution, params, log, root),
    )
    fid = metrics.get("fid") if metrics is not None else None
    if not decision.publish:
        log.info("publish skipped: %s", decision.reason)
        report = _report("skipped", decision, settings, now, fid, info.kimg, current, files=0)
    else:
        # The page is for its readers: "publish.gate is always" is the operator's setting (the log has it);
        # a better_fid decision says why this release replaced the last one, which readers can use.
        reasons = [decision.reason] if settings.gate != "always" else []
        notes = reasons + [f"warning: {text}" for text in mismatches]
        for text in mismatches:
            log.warning("metrics.json does not match generator.pt: %s", text)
        labels = evaluation_labels(info, root / params.base.paths.prepared, params.evaluate.n_samples)
        sections = read_section_inputs(root, params.base.paths.evaluate, params.base.paths.prepared, settings,
                                       info.z_dim, labels)
        published = write_release(
            target, generator, info, metrics, settings, params.section_dict(*SECTIONS_SHOWN), notes, current, log, now,
            generator_file, sections,
        )
        log.info("published release %s to %s (%s)", published.release, target.location, decision.reason)
        report = _report("published", decision, settings, now, fid, info.kimg, published, files=published.files)
    atomic_write_json(root / params.base.paths.publish_record, report.as_record())
    return report


def evaluation_labels(info: GeneratorFacts, prepared_dir: Path, evaluated: int) -> EvaluationLabels | None:
    """How evaluation labelled a conditional generator's samples (None: unconditional)."""
    if not info.classes:
        return None
    return EvaluationLabels(tuple(info.classes), open_prepared(prepared_dir), evaluated)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """The evaluate stage's metrics.json with the evaluation.json beside it, as one mapping
    (ganlib.metrics.report.read_evaluation); None when metrics.json does not exist."""
    try:
        metrics = read_evaluation(path.parent)
    except EvaluationError as exc:
        raise PublishError(str(exc)) from None
    if metrics is None:
        return None
    fid = metrics.get("fid")
    if fid is not None and (not isinstance(fid, (int, float)) or isinstance(fid, bool) or not math.isfinite(fid)):
        raise PublishError(f"{path}: fid is {fid!r}, expected a finite number or null; re-run the evaluate stage")
    return metrics


def metrics_mismatches(metrics: dict[str, Any], info: GeneratorFacts) -> list[str]:
    """Ways in which metrics.json was measured on something other than this generator."""
    problems = []
    kimg = metrics.get("checkpoint_kimg")
    if isinstance(kimg, (int, float)) and abs(float(kimg) - float(info.kimg)) > KIMG_TOLERANCE:
        problems.append(f"metrics are for the checkpoint at {kimg} kimg, the generator is at {info.kimg} kimg")
    resolution = metrics.get("resolution")
    if isinstance(resolution, int) and resolution != info.resolution:
        problems.append(f"metrics are at {resolution} px, the generator makes {info.resolution} px")
    data_md5 = metrics.get("data_md5")
    if data_md5 and info.data_md5 and data_md5 != info.data_md5:
        problems.append(f"metrics are for dataset {data_md5}, the generator was trained on {info.data_md5}")
    dataset_sha256 = metrics.get("dataset_sha256")
    if dataset_sha256 and info.dataset_sha256 and dataset_sha256 != info.dataset_sha256:
        problems.append(
            f"metrics are for prepared data {dataset_sha256[:12]}, the generator was trained on {info.dataset_sha256[:12]}"
        )
    return problems


@dataclass(frozen=True)
class PublishedRelease:
    release: str
    manifest_sha256: str
    files: int
    walk: str | None = None   # from the target root


def write_release(
    target: GalleryTarget,
    generator: nn.Module,
    info: GeneratorFacts,
    metrics: dict[str, Any] | None,
    settings: PublishParams,
    shown_params: dict[str, Any],
    notes: list[str],
    current: PublishedGallery | None,
    log: Logger,
    now: datetime,
    generator_file: bytes | None,
    sections: SectionInputs,
) -> PublishedRelease:
    """Generate the images and write a complete release (with `generator_file`, if given), then point the target at it.

    `sections`: what the evaluate stage left for the truncation and nearest-images sections (or the
    notes shown instead); the latent walk follows publish.walk_keyframes.
    """
    generator = generator.to(device="cpu", dtype=torch.float32)
    release_id = new_release_id(now)
    history = release_history(current, target.release_ids(), settings.keep_releases - 1)
    with target.publish(release_id, keep={entry.release for entry in history}, log=log) as upload:
        images = write_images(upload, generator, info, settings, sections.labels)
        class_rows = write_class_rows(upload, generator, info, settings, metrics)
        extra = write_sections(upload, generator, info.z_dim, info.resolution, settings, sections, info.classes)
        page = GalleryPage(
            release=release_id,
            published_at=now,
            checkpoint_kimg=info.kimg,
            dataset_version=info.data_md5,
            model_facts=model_facts(info),
            metrics=metrics,
            notes=notes,
            params=shown_params,
            display_scale=settings.display_scale,
            history=history,
            grid=images.grid,
            interpolation=images.interpolation,
            samples=images.samples,
            class_rows=class_rows,
            walk=extra.walk,
            truncation=extra.truncation,
            nearest=extra.nearest,
            section_notes=extra.notes,
        )
        upload.add(INDEX_FILE, render_gallery_html(page, link_prefix="", show_history=False).encode())
        manifest = release_manifest(page, info, metrics, settings.gate)
        if generator_file is not None:
            upload.add(RELEASE_GENERATOR_FILE, generator_file)
            manifest[GENERATOR_KEY] = generator_record(generator_file)
        release_files = {path.removeprefix(upload.prefix): digest for path, digest in upload.checksums.items()}
        upload.add(MANIFEST_FILE, _json_bytes({**manifest, "files": release_files}))
        upload.set_pointer(INDEX_FILE, render_gallery_html(page, link_prefix=upload.prefix).encode())
        top_manifest = _json_bytes({
            **manifest,
            "files": dict(sorted(upload.checksums.items())),  # the release's files and index.html, from the target root
            "history": [asdict(entry) for entry in history],
        })
        upload.set_pointer(MANIFEST_FILE, top_manifest)
    walk = upload.prefix + extra.walk_file if extra.walk_file else None
    return PublishedRelease(release_id, sha256_hex(top_manifest), files=len(upload.checksums), walk=walk)


@dataclass(frozen=True)
class GalleryImages:
    grid: ImageRef
    interpolation: ImageRef
    samples: list[ImageRef]


def write_images(
    upload: GalleryUpload, generator: nn.Module, info: GeneratorFacts, settings: PublishParams,
    labels: EvaluationLabels | None = None,
) -> GalleryImages:
    """Write the grid, the individual samples and the interpolation strip into the release.

    `labels`: a conditional generator's samples are drawn as the classes evaluation drew them as.
    """
    ext, r, batch = settings.image_format, info.resolution, settings.batch_size

    # One stream of latents (ganlib.models.sampling, shared with evaluation): the grid is its first samples.
    grid_latents = fixed_latents(settings.grid_size**2, info.z_dim, settings.seed)
    grid_labels = grid_row_labels(len(grid_latents), settings.grid_size, len(info.classes))  # a class per row
    grid_sheet = contact_sheet(generate_all(generator, grid_latents, r, batch, grid_labels), cols=settings.grid_size)
    upload.add(f"grid.{ext}", encode_image(grid_sheet, ext))
    grid = ImageRef(f"grid.{ext}", grid_sheet.shape[1], grid_sheet.shape[0], "samples from fixed seeds")

    sample_latents = fixed_latents(settings.n_samples, info.z_dim, settings.seed)
    sample_labels = labels.first(settings.n_samples, settings.seed) if labels is not None else None
    samples = []
    index = 0
    for batch_images in generate_images(generator, sample_latents, r, batch, sample_labels):
        for image in batch_images:
            name = f"samples/sample_{index:04d}.{ext}"
            upload.add(name, encode_image(image, ext))
            caption = f"sample {index}" if labels is None else f"sample {index} · {labels.name(int(sample_labels[index]))}"
            samples.append(ImageRef(name, r, r, caption))
            index += 1

    strip_latents = interpolation_latents(settings.seed, settings.interpolation_rows, settings.interpolation_steps, info.z_dim)
    strip = contact_sheet(generate_all(generator, strip_latents, r, batch), cols=settings.interpolation_steps)
    upload.add(f"interpolation.{ext}", encode_image(strip, ext))
    interpolation = ImageRef(f"interpolation.{ext}", strip.shape[1], strip.shape[0], "latent interpolation")
    return GalleryImages(grid=grid, interpolation=interpolation, samples=samples)


def write_class_rows(
    upload: GalleryUpload, generator: nn.Module, info: GeneratorFacts, settings: PublishParams,
    metrics: dict[str, Any] | None,
) -> list[ClassRow]:
    """A conditional generator's row per class: the grid's first row of latents drawn as each class, with its scores."""
    ext, r, cols = settings.image_format, info.resolution, settings.grid_size
    latents = fixed_latents(cols, info.z_dim, settings.seed)
    rows = []
    for label, name in enumerate(info.classes):
        labels = torch.full((cols,), label, dtype=torch.long)
        sheet = contact_sheet(generate_all(generator, latents, r, settings.batch_size, labels), cols=cols)
        path = f"classes/{name}.{ext}"
        upload.add(path, encode_image(sheet, ext))
        image = ImageRef(path, sheet.shape[1], sheet.shape[0], f"class {name}: the first {cols} latents")
        rows.append(ClassRow(name=name, image=image, scores=class_scores_text(name, metrics)))
    return rows


def class_scores_text(name: str, metrics: dict[str, Any] | None) -> str:
    """One class's FID/KID as the gallery states it, or why there is none (metrics.json's per_class)."""
    if metrics is None:
        return "not evaluated"
    scores = (metrics.get("per_class") or {}).get(name)
    if not scores:
        return "no per-class scores in metrics.json"
    n_real, n_samples = scores.get("n_real"), scores.get("n_samples")
    if scores.get("fid") is None:
        return f"too few real images ({n_real}) for a per-class FID"
    text = f"FID {scores['fid']:.2f}"
    if scores.get("fid_low") is not None and scores.get("fid_high") is not None:
        text += f" ({scores['fid_low']:.2f} to {scores['fid_high']:.2f})"
    if scores.get("kid") is not None:
        text += f", KID {scores['kid']:.4f}"
        if scores.get("kid_std") is not None:
            text += f" ± {scores['kid_std']:.4f}"
    return text + f"; {n_samples} samples of this class against its {n_real} real images"


def release_history(current: PublishedGallery | None, present: list[str], limit: int) -> list[HistoryEntry]:
    """The releases kept beside the new one, newest first: the current one, then its history."""
    if current is None or limit <= 0:
        return []
    candidates = [current.manifest] + list(current.manifest.get("history") or [])
    entries = [
        HistoryEntry(
            release=str(item.get("release")),
            published_at=str(item.get("published_at")),
            checkpoint_kimg=item.get("checkpoint_kimg"),
            fid=item.get("fid"),
        )
        for item in candidates
        if isinstance(item, dict) and item.get("release") in present
    ]
    return entries[:limit]


def model_facts(info: GeneratorFacts) -> list[tuple[str, str]]:
    return [
        ("architecture", info.arch),
        ("resolution", f"{info.resolution} px"),
        ("latent size (z_dim)", str(info.z_dim)),
        ("checkpoint", f"{info.kimg:.1f} kimg (EMA generator)"),
        ("dataset version (DVC md5)", info.data_md5 or "untracked"),
        ("prepared data sha256", info.dataset_sha256 or "unknown"),
        ("params fingerprint", info.params_fingerprint or "unknown"),
        *([("classes", ", ".join(info.classes))] if info.classes else []),
    ]


def release_manifest(page: GalleryPage, info: GeneratorFacts, metrics: dict[str, Any] | None, gate: str) -> dict[str, Any]:
    return {
        "format": GALLERY_FORMAT,
        "release": page.release,
        "published_at": iso_utc(page.published_at),
        "gate": gate,
        "notes": list(page.notes),
        "fid": metrics.get("fid") if metrics is not None else None,
        MANIFEST_KEY: fid_settings(metrics),   # what the next better_fid gate needs to know whether it may compare
        "checkpoint_kimg": info.kimg,
        "model": {
            "arch": info.arch,
            "resolution": info.resolution,
            "z_dim": info.z_dim,
            "data_md5": info.data_md5,
            "dataset_sha256": info.dataset_sha256,
            "params_fingerprint": info.params_fingerprint,
        },
        "metrics": metrics,
        "params": page.params,
    }


def _report(
    status: Literal["published", "skipped"],
    decision: GateDecision,
    settings: PublishParams,
    now: datetime,
    fid: float | None,
    kimg: float,
    pointer: PublishedGallery | PublishedRelease | None,
    files: int,
) -> PublishReport:
    return PublishReport(
        status=status,
        reason=decision.reason,
        target=settings.target,
        index=f"{settings.target.rstrip('/')}/{INDEX_FILE}",
        release=pointer.release if pointer is not None else None,
        fid=fid,
        previous_release=decision.previous_release,
        previous_fid=decision.previous_fid,
        manifest_sha256=pointer.manifest_sha256 if pointer is not None else None,
        checkpoint_kimg=kimg,
        files=files,
        date=iso_utc(now),
        comparison=None if decision.comparison is None else asdict(decision.comparison),
        walk=pointer.walk if isinstance(pointer, PublishedRelease) else None,
    )


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
