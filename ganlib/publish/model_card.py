"""MODEL_CARD.md: the model package described for a person, rendered from templates/MODEL_CARD.md.j2.

    model_card_context(config, package, metrics, ...)   the template's variables: text only, every one filled
    render_model_card(context)                           the Markdown

Every field has a value: a number, a sentence, or "not measured" / "not
recorded" saying which stage or setting would supply it, never a blank or
"None" (tests/test_model_package.py renders a card from a bare generator and
checks). The markup lives in the template; this module only turns records
(config.json, metrics.json, the preprocess and train records) into strings.
Values that come from outside (params, metrics keys, reasons) are made safe
for a Markdown table cell.
"""

from __future__ import annotations

import hashlib
import math
from functools import partial
from typing import Any, Mapping, Sequence

import jinja2

from ganlib.formatting import fid_noise_band_text, fid_noise_description, fixed, plus_minus, significant
from ganlib.metrics.report import with_current_metric_keys
from ganlib.publish.model_package import ModelPackage
from ganlib.publish.page import TEMPLATE_DIR

CARD_TEMPLATE = "MODEL_CARD.md.j2"
NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"


def model_card_context(
    config: Mapping[str, Any],
    package: ModelPackage,
    metrics: Mapping[str, Any] | None,
    files: Mapping[str, bytes],
    metric_warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The template's variables. `files`: every package file but the card, by name; `metric_warnings`:
    ways metrics.json was measured on something other than this model (shown above the metrics)."""
    metrics = None if metrics is None else with_current_metric_keys(metrics)
    gallery = config["gallery"]
    return {
        "architecture": config["architecture"],
        "class_name": config["class_name"],
        "arch_source": config["arch_source"],
        "resolution": config["resolution"],
        "z_dim": config["z_dim"],
        # A conditional generator's class names (safe identifiers, preprocess checks them), in label order.
        "classes": [cell(name) for name in config.get("classes", [])],
        "kimg": fixed(config["kimg"], 1),
        "created_at": config["created_at"],
        "gallery": gallery_sentence(gallery),
        "licence": cell(config["data_licence"]),
        "data_rows": _rows(data_rows(config, package)),
        "training_rows": _rows(training_rows(config, package)),
        "metrics_measured": metrics is not None,
        "metric_rows": _rows(metric_rows(metrics)),
        "metric_warnings": [cell(text) for text in metric_warnings],
        "memorisation": memorisation_sentence(metrics),
        "samples_file": config["samples"]["file"],
        "samples_caption": samples_caption(config),
        "onnx": config["onnx"],
        "onnx_difference": significant(config["onnx"]["max_abs_difference_vs_torch"], 3),
        "file_rows": [{"name": name, "bytes": f"{len(data):,}", "sha256": hashlib.sha256(data).hexdigest()}
                      for name, data in sorted(files.items())],
    }


def render_model_card(context: Mapping[str, Any]) -> str:
    """The card's Markdown; a variable the template uses but `context` lacks is an error, not a blank."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,   # Markdown, not HTML: values are made table-safe by `cell` instead
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(CARD_TEMPLATE).render(context)


def samples_caption(config: Mapping[str, Any]) -> str:
    grid, seed, classes = config["samples"]["grid"], config["samples"]["seed"], config.get("classes", [])
    caption = f"{grid} x {grid} samples of seed {seed}, image i (row-major) from latent i"
    if classes:
        rows = ", ".join(f"row {r + 1}: {classes[r % len(classes)]}" for r in range(grid))
        caption += f"; a class per row ({cell(rows)})"
    return caption


def gallery_sentence(gallery: Mapping[str, Any]) -> str:
    if gallery.get("status") == "published":
        return f"Published to the gallery as release {gallery.get('release')} ({cell(gallery.get('reason'))})."
    kept = gallery.get("release")
    shown = f"the gallery still shows release {kept}" if kept else "nothing is published"
    return f"Not published to the gallery, {shown}: {cell(gallery.get('reason'))}."


def data_rows(config: Mapping[str, Any], package: ModelPackage) -> list[tuple[str, str]]:
    dataset, record = config["dataset"], package.dataset
    rejected = NOT_RECORDED if record.rejected is None else str(record.rejected)
    if record.rejects_by_reason:
        rejected += " (" + ", ".join(f"{reason}: {count}" for reason, count in record.rejects_by_reason.items()) + ")"
    if record.near_duplicate_groups is None:
        near = NOT_RECORDED
    else:
        action = {"drop": "left out of training", "report": "listed in qa_report.json, kept"}.get(
            record.near_duplicate_action or "", record.near_duplicate_action or "action not recorded")
        near = f"{record.near_duplicate_groups} groups, {record.near_duplicate_copies} later copies ({action})"
    return [
        ("dataset version (DVC md5 of the raw data)",
         dataset["data_md5"] or "untracked: no DVC record of the raw data"),
        ("prepared data (sha256 of images.npy)", dataset["prepared_sha256"] or NOT_RECORDED),
        ("images trained on", _count(dataset["images"])),
        ("files scanned by preprocess", _count(record.scanned)),
        ("files rejected", rejected),
        ("hidden files skipped", _count(record.hidden_skipped)),
        ("perceptual near-duplicates", near),
        ("licence of the data", config["data_licence"]),
    ]


def training_rows(config: Mapping[str, Any], package: ModelPackage) -> list[tuple[str, str]]:
    build = ", ".join(f"{key}={value}" for key, value in config["build_kwargs"].items())
    training = package.training
    return [
        ("architecture", f"{config['architecture']} ({config['class_name']}({build}))"),
        ("resolution", f"{config['resolution']} x {config['resolution']} px, RGB"),
        ("latent size (z_dim)", str(config["z_dim"])),
        ("length", f"{fixed(config['kimg'], 1)} kimg (thousands of real images shown)"),
        ("time in training steps", NOT_RECORDED if training.step_seconds is None
            else f"{duration(training.step_seconds)} over {training.ticks} ticks (upkeep between ticks not counted)"),
        ("precision", training.precision or NOT_RECORDED),
        ("preset", config["preset"] or "none (no preset of presets.yaml matches this run's settings)"),
        ("params fingerprint", config["params_fingerprint"] or NOT_RECORDED),
        ("training code digest", config["code_digest"] or NOT_RECORDED),
        ("weights", "EMA (exponential moving average) of the generator"),
    ]


def metric_rows(metrics: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Every metric the card reports, "not measured" (with why, where known) for the absent ones."""
    if metrics is None:
        return [(label, "not evaluated: no metrics.json (run the evaluate stage)") for label in
                ("FID ↓", "KID ↓", "Inception Score ↑", "precision / recall / density / coverage",
                 "memorisation (see below)")]
    three = partial(fixed, decimals=3)
    rows = [("FID ↓", fid_text(metrics)),
            ("KID ↓", plus_minus(metrics.get("kid_mean"), metrics.get("kid_std"), partial(fixed, decimals=5),
                                 missing=NOT_MEASURED))]
    if metrics.get("is_mean") is not None:
        rows.append(("Inception Score ↑", plus_minus(metrics["is_mean"], metrics.get("is_std"), three)))
    else:
        # The reasons (a weights file not found here, the command that installs it) are the publishing
        # machine's, kept in evaluation.json; the card travels with the model.
        rows.append(("Inception Score ↑", NOT_MEASURED))
    if "fd_dinov2" in metrics or metrics.get("fd_dinov2_unavailable_reason"):
        rows.append(("FD_DINOv2 ↓", three(metrics["fd_dinov2"]) if metrics.get("fd_dinov2") is not None
                     else NOT_MEASURED))
    k = metrics.get("prdc_k")
    for key, label in (("precision", "precision ↑"), ("recall", "recall ↑"), ("density", "density (~1 is typical)"),
                       ("coverage", "coverage ↑")):
        value = metrics.get(key)
        rows.append((label, NOT_MEASURED if value is None else three(value) + (f" (k = {k})" if k else "")))
    rows.append(("memorisation (Inception features)", _memorisation_value(metrics, "memorisation")))
    rows.append(("memorisation (32x32 pixels)", _memorisation_value(metrics, "memorisation_pixels")))
    rows += [
        ("generated images measured", _count(metrics.get("n_samples"))),
        ("real images measured", _count(metrics.get("n_reference"))),
        ("feature extractor", cell(metrics.get("extractor")) or NOT_RECORDED),
        ("measured at", f"{fixed(metrics['checkpoint_kimg'], 1)} kimg" if metrics.get("checkpoint_kimg") is not None
            else NOT_RECORDED),
    ]
    return rows


def fid_text(metrics: Mapping[str, Any]) -> str:
    """FID with its sampling-noise band and what the band is, as the gallery words it."""
    fid = metrics.get("fid")
    if fid is None:
        return NOT_MEASURED
    three = partial(fixed, decimals=3)
    low, high = metrics.get("fid_noise_low"), metrics.get("fid_noise_high")
    if low is None or high is None:
        return f"{three(fid)} (no sampling-noise band: evaluate.fid_bootstrap is 0)"
    band = fid_noise_band_text(low, high, three)
    return (f"{three(fid)}, sampling noise {band}: "
            f"{fid_noise_description(metrics.get('fid_noise_resamples'), metrics.get('fid_noise_n'))}")


def memorisation_sentence(metrics: Mapping[str, Any] | None) -> str:
    """What the memorisation figure says about this model, in words (the limitations section)."""
    if metrics is None or metrics.get("memorisation") is None or metrics.get("memorisation_baseline") is None:
        return ("Memorisation was not measured: add `memorisation` to evaluate.metrics to check whether samples "
                "copy training images.")
    value, baseline = float(metrics["memorisation"]), float(metrics["memorisation_baseline"])
    n = metrics.get("memorisation_n") or metrics.get("n_samples")
    return (f"Memorisation: {value:.3f} of {n} samples are closer to a training image (in Inception features) than "
            f"{1 - baseline:.0%} of the training images are to their nearest other one. A generator of fresh images "
            f"scores about {baseline:.3g}, one that copies its training images about 1; the excess over "
            f"{baseline:.3g} ({value - baseline:+.3f}) is roughly the share of near-copies. The closest "
            "sample/training pairs are in the evaluate stage's memorisation.json and the gallery.")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def cell(value: Any) -> str:
    """`value` as text that stays inside one Markdown table cell (no pipe, no line break)."""
    if value is None:
        return ""
    return " ".join(str(value).split()).replace("|", "\\|")


def _memorisation_value(metrics: Mapping[str, Any], key: str) -> str:
    value, baseline = metrics.get(key), metrics.get("memorisation_baseline")
    if value is None or baseline is None:
        return NOT_MEASURED
    return f"{fixed(value, 3)} (fresh images: ~{significant(baseline, 3)}, copies: 1)"


def _count(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return NOT_RECORDED


def _rows(rows: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"label": cell(label), "value": cell(value)} for label, value in rows]
