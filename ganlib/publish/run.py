"""The publish stage as `dvc repro` runs it: the gated gallery and the model package.

    run_publish_stage(params, log, root) -> PublishStageReport

1. load `base.paths.train/generator.pt` (a missing or broken file stops here:
   nothing is published, the previous package stays);
2. build the model package in memory (ganlib/publish/model_package.py): the
   ONNX export and its check can fail on the model, so they go before the
   gallery changes;
3. gate and publish the gallery (ganlib/publish/stage.py), which records
   what it did in `base.paths.publish_record`;
4. render MODEL_CARD.md with the gate's outcome and swap the complete
   package into `base.paths.model`.

The package is written on every run, of this run's generator, whether the
gate published it or kept an earlier release (model_package.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ganlib.config import Params
from ganlib.logs import Logger
from ganlib.metrics.report import METRICS_FILE
from ganlib.models.generator_file import load_generator
from ganlib.publish.model_card import model_card_context, render_model_card
from ganlib.publish.model_package import (
    CARD_FILE,
    CONFIG_FILE,
    build_model_package,
    config_bytes,
    package_config,
    write_model_package,
)
from ganlib.publish.stage import (
    GENERATOR_FILE,
    PublishReport,
    metrics_mismatches,
    publish_generator,
    read_metrics,
)


@dataclass(frozen=True)
class PublishStageReport:
    gallery: PublishReport         # what the gate decided and where the gallery is (also in publish.json)
    model_dir: Path                # the package directory (base.paths.model)
    model_config: dict[str, Any]   # its config.json


def run_publish_stage(params: Params, log: Logger, root: Path, now: datetime | None = None) -> PublishStageReport:
    """Publish the gallery (if the gate says so) and write the model package of the trained generator."""
    now = now or datetime.now(timezone.utc)
    path = root / params.base.paths.train / GENERATOR_FILE
    # CPU and fp32 whatever base.device says: the published bytes must not depend on the machine.
    generator, info = load_generator(path, torch.device("cpu"))
    generator_file = path.read_bytes()
    package = build_model_package(generator, generator_file, info, params, root)
    report = publish_generator(generator, info, params, log, root, now=now, generator_file=generator_file)

    config = package_config(package, gallery_record(report), now)
    metrics = read_metrics(root / params.base.paths.evaluate / METRICS_FILE)
    warnings = metrics_mismatches(metrics, info) if metrics is not None else []
    files = {**package.files(), CONFIG_FILE: config_bytes(config)}
    card = render_model_card(model_card_context(config, package, metrics, files, warnings))
    model_dir = write_model_package(root / params.base.paths.model, package, config, card)
    onnx = package.onnx
    log.info("model package: %s (%s, ONNX by the %s exporter, max difference from torch %.2g; %s)",
             params.base.paths.model, ", ".join(sorted([*files, CARD_FILE])), onnx.exporter,
             onnx.max_abs_difference, gallery_record(report)["status"])
    return PublishStageReport(gallery=report, model_dir=model_dir, model_config=config)


def gallery_record(report: PublishReport) -> dict[str, Any]:
    """What config.json and the card say the gate did with this model."""
    return {
        "status": report.status,          # published | skipped (the gallery kept `release`)
        "release": report.release,        # the release the gallery shows after this run (None: none)
        "reason": report.reason,
        "target": report.target,
        "date": report.date,
    }


def model_package_markdown(stage: PublishStageReport) -> str:
    """Where the model package is, what it holds and how its ONNX file compares with torch."""
    config = stage.model_config
    onnx = config["onnx"]
    files = "\n".join(f"| `{name}` | `{digest[:16]}` |" for name, digest in config["files"].items())
    return (
        f"**Model package** of the trained {config['architecture']} generator ({config['resolution']} px, "
        f"{config['kimg']:.1f} kimg) in `{stage.model_dir}`; read `MODEL_CARD.md` there.\n\n"
        f"| file | sha256 (first 16) |\n|---|---|\n{files}\n\n"
        f"ONNX (opset {onnx['opset']}, {onnx['exporter']} exporter) matches torch to "
        f"{onnx['max_abs_difference_vs_torch']:.2g} on {onnx['checked_latents']} latents "
        f"(tolerance {onnx['tolerance']:g})."
    )


def walk_markdown(report: PublishReport) -> str | None:
    """A Prefect artifact's text linking the published latent walk (None: this run published none).

    A link rather than the video itself: artifacts are Markdown, which cannot
    hold an MP4, and the file already lives beside the gallery page.
    """
    if report.walk is None:
        return None
    video, page = _url(f"{report.target.rstrip('/')}/{report.walk}"), _url(report.index)
    return (f"**Latent walk** of release {report.release}: [{report.walk.rsplit('/', 1)[-1]}]({video}), "
            f"also on the [gallery page]({page}).")


def _url(location: str) -> str:
    """A target location as a URL: fsspec URLs as they are, local paths (relative to the working directory) as file:."""
    return location if "://" in location else Path(location).resolve().as_uri()
