"""The gallery page: one self-contained static index.html.

No scripts, no external URLs (a Content-Security-Policy says so to the
browser too), inline CSS, relative image links. The markup and the CSS live
in templates/gallery.html.j2, for whoever edits the page's look; this module
turns a GalleryPage into plain values for it (text, numbers, relative URLs,
never markup). The template is rendered with autoescape on, so every piece
of text that comes from outside this module (params values, dataset md5,
metric names, reasons) is HTML-escaped, in element text and attributes alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import jinja2

from ganlib.formatting import fid_noise_band_text, fid_noise_description, fixed, plus_minus
from ganlib.metrics.report import with_current_metric_keys

# Here rather than in the template: editing the page's look should not be
# where its security policy (no scripts, no external URLs) changes.
# img-src allows data: only for the empty favicon, which stops the browser
# asking the server for /favicon.ico (a 404 in every console otherwise).
# media-src 'self': the latent walk video, a file of the release like the images.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"

# Beside this file, so an editable install reads the working tree's template
# and a wheel ships it as package data (pyproject.toml).
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "gallery.html.j2"

# How evaluate's bookkeeping keys read in the metrics table; any other key shows as it is.
MEASUREMENT_LABELS = {
    "n_samples": "generated images measured",
    "n_reference": "real images measured",
    "kid_subset_size": "KID subset size",
    "extractor": "feature extractor",
    "extractor_description": "feature extractor, in full",
    "checkpoint_kimg": "measured at (kimg)",
    "data_md5": "measured against dataset (DVC md5)",
    "dataset_sha256": "measured against prepared data (sha256)",
    "resolution": "resolution (px)",
    "fid_noise_bias": "FID sampling-noise bias (mean resampled FID minus FID; kept out of the band)",
    "prdc_k": "k of precision/recall/density/coverage",
    "memorisation_n": "samples checked for memorisation",
}
# The sections that may be replaced by a one-line note (GalleryPage.section_notes).
SECTION_NOTES = ("walk", "truncation", "nearest")
# Shown within the FID rows (the band's description names the resample count and n).
FID_NOISE_KEYS = {"fid_noise_low", "fid_noise_high", "fid_noise_resamples", "fid_noise_n",
                  "fid_infinity", "fid_infinity_unavailable_reason"}


@dataclass(frozen=True)
class ImageRef:
    """An image of the release: its path inside the release directory and its pixel size."""

    path: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class VideoRef:
    """The latent walk: a file of the release (MP4, or an animated WebP/GIF where MP4 could not be written)."""

    path: str
    width: int             # pixels, already upscaled by the walk (shown at this size)
    height: int
    mime_type: str         # video/mp4 is a <video>; image/webp, image/gif are an <img>
    caption: str


@dataclass(frozen=True)
class TruncationTable:
    """The evaluate stage's truncation.json as text: one row per psi."""

    columns: list[str]
    rows: list[list[str]]
    caption: str


@dataclass(frozen=True)
class PairRef:
    """A generated sample and its nearest training image, shown side by side."""

    sample: ImageRef
    training: ImageRef
    caption: str


@dataclass(frozen=True)
class NearestSection:
    """One distance space of the memorisation check: its figure and its closest pairs."""

    heading: str
    summary: str           # the space's memorisation figure and threshold, in words
    description: str       # what the distance measures
    pairs: Sequence[PairRef]


@dataclass(frozen=True)
class ClassRow:
    """A conditional generator's class: a row of samples and its per-class scores, in words."""

    name: str
    image: ImageRef
    scores: str


@dataclass(frozen=True)
class HistoryEntry:
    release: str
    published_at: str
    checkpoint_kimg: float | None
    fid: float | None


@dataclass(frozen=True)
class GalleryPage:
    release: str
    published_at: datetime
    checkpoint_kimg: float
    dataset_version: str | None               # the DVC md5 of the raw dataset
    model_facts: Sequence[tuple[str, str]]    # (label, value) rows
    metrics: Mapping[str, Any] | None         # metrics.json as written by evaluate; None = not evaluated
    notes: Sequence[str]                      # why it was published, warnings
    grid: ImageRef
    interpolation: ImageRef
    samples: Sequence[ImageRef]
    params: Mapping[str, Any]                 # the sections shown under "Parameters"
    display_scale: int
    history: Sequence[HistoryEntry] = field(default_factory=tuple)
    class_rows: Sequence[ClassRow] = field(default_factory=tuple)  # a conditional generator's classes
    # The sections below the samples; each is None/empty when its input is absent, and
    # section_notes then holds the one line shown in its place ("walk", "truncation", "nearest").
    walk: VideoRef | None = None
    truncation: TruncationTable | None = None
    nearest: Sequence[NearestSection] = field(default_factory=tuple)
    section_notes: Mapping[str, str] = field(default_factory=dict)


def render_gallery_html(page: GalleryPage, link_prefix: str = "", show_history: bool = True) -> str:
    """The page as HTML text. Image links are `link_prefix + image.path`.

    The top-level index.html of a target uses link_prefix "releases/<id>/";
    the copy inside the release directory uses "".
    """
    return render_gallery_template(gallery_context(page, link_prefix, show_history))


def gallery_context(page: GalleryPage, link_prefix: str = "", show_history: bool = True) -> dict[str, Any]:
    """The template's variables: text, numbers and already percent-encoded relative URLs, never markup."""
    scale = page.display_scale
    return {
        "content_security_policy": CONTENT_SECURITY_POLICY,
        "release": page.release,
        "published_at": page.published_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "checkpoint_kimg": fixed(page.checkpoint_kimg, 1),
        "dataset_version": page.dataset_version or "untracked",
        "notes": list(page.notes),
        "metrics": None if page.metrics is None else _rows(metric_rows(page.metrics)),   # None: "not evaluated"
        "measurement": [] if page.metrics is None else _rows(measurement_rows(page.metrics)),
        "fid_noise_note": None if page.metrics is None else fid_noise_note(page.metrics),
        "grid": _image(page.grid, link_prefix, scale),
        "interpolation": _image(page.interpolation, link_prefix, scale),
        "samples": [_image(image, link_prefix, scale) for image in page.samples],
        "class_rows": [{"name": row.name, "image": _image(row.image, link_prefix, scale), "scores": row.scores}
                       for row in page.class_rows],
        "walk": None if page.walk is None else _video(page.walk, link_prefix),
        "truncation": page.truncation,
        "nearest": [
            {"heading": section.heading, "summary": section.summary, "description": section.description,
             "pairs": [{"sample": _image(pair.sample, link_prefix, scale),
                        "training": _image(pair.training, link_prefix, scale), "caption": pair.caption}
                       for pair in section.pairs]}
            for section in page.nearest
        ],
        "section_notes": {name: page.section_notes.get(name) for name in SECTION_NOTES},
        "model_facts": _rows(page.model_facts),
        "param_sections": list(page.params),
        "params_json": json.dumps(page.params, indent=2, sort_keys=True, ensure_ascii=False),
        # The copy inside a release has no history: its relative links would point nowhere.
        "history": [_history_row(entry) for entry in page.history] if show_history else [],
        "manifest_href": _relative_url(link_prefix + "manifest.json"),
    }


def render_gallery_template(context: Mapping[str, Any]) -> str:
    """The gallery template rendered with `context`.

    Raises jinja2.UndefinedError when the template uses a variable that
    `context` lacks, rather than leaving a blank where a value should be.
    """
    html = gallery_environment().get_template(TEMPLATE_NAME).render(context)
    return _html_escape_spelling(html)


def gallery_environment() -> jinja2.Environment:
    """A new Jinja environment for the gallery template.

    New on each call rather than one module-level environment: nothing is
    shared between callers, and rendering twice per publish costs nothing
    worth caching.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        # Explicitly on: select_autoescape's default suffixes would not match "*.html.j2".
        autoescape=True,
        # A misspelt or missing variable must fail the publish, not publish a page with a gap.
        undefined=jinja2.StrictUndefined,
        # Block tags on lines of their own leave no blank lines, so the template can be laid out for reading.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the scores for the metrics table; measurement_rows has the rest."""
    metrics = with_current_metric_keys(metrics)   # a release published before the band's rename
    rows: list[tuple[str, str]] = []
    if "fid" in metrics:
        rows.append(("FID ↓", fixed(metrics["fid"], 3)))
        rows += _fid_uncertainty_rows(metrics)
    if "kid_mean" in metrics:
        rows.append(("KID ↓", plus_minus(metrics.get("kid_mean"), metrics.get("kid_std"), partial(fixed, decimals=5))))
    if "is_mean" in metrics or "is_unavailable_reason" in metrics:
        if metrics.get("is_mean") is None:
            # Why (a missing weights file, where it was looked for, how to install it) is the operator's
            # business: evaluation.json and the run log carry it, never the published page.
            rows.append(("Inception Score ↑", "not measured for this release"))
        else:
            rows.append(("Inception Score ↑", plus_minus(metrics.get("is_mean"), metrics.get("is_std"), partial(fixed, decimals=3))))
    for key, label in (("precision", "Precision ↑"), ("recall", "Recall ↑"), ("density", "Density (~1 typical)"),
                       ("coverage", "Coverage ↑")):
        if key in metrics:
            rows.append((label, fixed(metrics[key], 3)))
    rows += _memorisation_rows(metrics)
    return rows


# What metric_rows shows, and what measurement_rows leaves to it.
SCORE_KEYS = {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "is_unavailable_reason", "precision", "recall",
              "density", "coverage", "memorisation", "memorisation_pixels", "memorisation_baseline", *FID_NOISE_KEYS}


def measurement_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How the scores were measured (sample counts, extractor, dataset, seed...): the page's collapsed details.

    Reasons a metric is unavailable are left out: they name files and commands of the publishing machine.
    """
    metrics = with_current_metric_keys(metrics)
    hidden = {key for key in metrics if key.endswith("_unavailable_reason")}
    return [(MEASUREMENT_LABELS.get(key, key), _value_text(metrics[key]))
            for key in sorted(set(metrics) - SCORE_KEYS - hidden)]


def _memorisation_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each memorisation figure beside what fresh images and copies score (its baseline and 1)."""
    baseline = metrics.get("memorisation_baseline")
    rows = []
    for key, label in (("memorisation", "Memorisation (Inception features)"),
                       ("memorisation_pixels", "Memorisation (32x32 pixels)")):
        if metrics.get(key) is not None:
            reference = f" (fresh images ~{baseline:.3g}, copies 1)" if isinstance(baseline, (int, float)) else ""
            rows.append((label, fixed(metrics[key], 3) + reference))
    return rows


def _fid_uncertainty_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The FID's sampling-noise band and FID-infinity, each labelled for what it measures."""
    rows = []
    if metrics.get("fid_noise_low") is not None and metrics.get("fid_noise_high") is not None:
        band = fid_noise_band_text(metrics["fid_noise_low"], metrics["fid_noise_high"], partial(fixed, decimals=3))
        what = fid_noise_description(metrics.get("fid_noise_resamples"), metrics.get("fid_noise_n"))
        rows.append(("FID sampling noise", f"{band}: {what}"))
    if metrics.get("fid_infinity") is not None:
        rows.append(("FID-infinity ↓ (extrapolated to infinitely many samples)", fixed(metrics["fid_infinity"], 3)))
    elif metrics.get("fid_infinity_unavailable_reason"):
        rows.append(("FID-infinity", str(metrics["fid_infinity_unavailable_reason"])))
    return rows


def fid_noise_note(metrics: Mapping[str, Any]) -> str | None:
    """A sentence under the metrics table saying what the FID band is, when the page shows one."""
    metrics = with_current_metric_keys(metrics)
    if metrics.get("fid_noise_low") is None or metrics.get("fid_noise_high") is None:
        return None
    n = metrics.get("fid_noise_n")
    return (f"The FID sampling noise is how far FID moves between draws of {n or 'the same number of'} generated "
            "images from this generator, the real images' statistics held fixed; it is not a confidence "
            "interval on the true FID (FID at a finite sample count is biased upwards).")


def _rows(rows: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"label": label, "value": value} for label, value in rows]


def _image(image: ImageRef, link_prefix: str, scale: int) -> dict[str, Any]:
    return {
        "src": _relative_url(link_prefix + image.path),
        "alt": image.alt,
        "width": image.width * scale,   # the CSS upscales by nearest neighbour to this size
        "height": image.height * scale,
    }


def _video(video: VideoRef, link_prefix: str) -> dict[str, Any]:
    return {
        "src": _relative_url(link_prefix + video.path),
        "width": video.width,
        "height": video.height,
        "is_video": video.mime_type.startswith("video/"),
        "mime_type": video.mime_type,
        "caption": video.caption,
    }


def _history_row(entry: HistoryEntry) -> dict[str, str]:
    return {
        "release": entry.release,
        "href": _relative_url(f"releases/{entry.release}/index.html"),
        "published_at": entry.published_at,
        "checkpoint_kimg": fixed(entry.checkpoint_kimg, 1),
        "fid": fixed(entry.fid, 3),
    }


def _relative_url(path: str) -> str:
    """`path` percent-encoded, "/" kept: the URL of a file under the target.

    Autoescape keeps a value inside its attribute; this also keeps it a
    relative path to that file: a ":" becomes %3A (no "javascript:" or other
    scheme), "?" and "#" cannot cut it short. Release ids and image names
    use only letters, digits, "-", "_" and ".", so their URLs read exactly
    as the paths do.
    """
    return quote(path, safe="/")


# MarkupSafe's spelling of the escaped quotes -> html.escape's, which built these pages before the template.
_QUOTE_ENTITIES = {"&#34;": "&quot;", "&#39;": "&#x27;"}


def _html_escape_spelling(html: str) -> str:
    """Escaped quotes spelt as html.escape does (&quot;, &#x27;) rather than as MarkupSafe does (&#34;, &#39;).

    The same characters either way; this keeps a page's escaped text what
    it was in pages published before the template, which readers and tests
    search for. No value can spell "&#34;" or "&#39;" itself: its "&" is
    escaped to "&amp;".
    """
    for markupsafe_entity, html_escape_entity in _QUOTE_ENTITIES.items():
        html = html.replace(markupsafe_entity, html_escape_entity)
    return html


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "n/a"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "; ".join(value) or "none"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)
