"""The gallery page: one self-contained static index.html.

No scripts, no external URLs (a Content-Security-Policy says so to the
browser too), inline CSS, relative image links. Every piece of text that
comes from outside this module (params values, dataset md5, metric names,
reasons) goes through `html.escape`, in element text and attributes alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from typing import Any, Mapping, Sequence

# img-src allows data: only for the empty favicon, which stops the browser
# asking the server for /favicon.ico (a 404 in every console otherwise).
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem;
       background: #111418; color: #e6e6e6; }
a { color: #8cc4ff; }
h1 { margin-bottom: .2rem; }
.meta { color: #a8b0b8; margin-top: 0; }
.notes li { color: #f0c674; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .25rem .8rem .25rem 0; border-bottom: 1px solid #2a3038; vertical-align: top; }
th { color: #a8b0b8; font-weight: normal; }
td.num { font-variant-numeric: tabular-nums; }
img.px { image-rendering: crisp-edges; image-rendering: pixelated; max-width: 100%; height: auto;
         background: #000; display: block; }
.samples { display: flex; flex-wrap: wrap; gap: 6px; }
.samples img.px { display: inline-block; }
summary { cursor: pointer; color: #a8b0b8; }
pre { background: #1a1f26; padding: .8rem; overflow-x: auto; font-size: .85rem; }
footer { color: #a8b0b8; margin-top: 2rem; font-size: .9rem; }
"""


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
}


@dataclass(frozen=True)
class ImageRef:
    """An image of the release: its path inside the release directory and its pixel size."""

    path: str
    width: int
    height: int
    alt: str


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


def render_gallery_html(page: GalleryPage, link_prefix: str = "", show_history: bool = True) -> str:
    """The page as HTML text. Image links are `link_prefix + image.path`.

    The top-level index.html of a target uses link_prefix "releases/<id>/";
    the copy inside the release directory uses "".
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CONTENT_SECURITY_POLICY)}">',
        '<link rel="icon" href="data:,">',
        f"<title>scenegan gallery · {escape(page.release)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        _header(page),
        _notes(page.notes),
        _metrics_section(page.metrics),
        _image_section("Samples from fixed seeds", "grid", [page.grid], link_prefix, page.display_scale),
        _image_section(
            "Latent interpolation (slerp between fixed latents, one pair per row)",
            "interpolation", [page.interpolation], link_prefix, page.display_scale,
        ),
        _image_section("Individual samples", "samples", page.samples, link_prefix, page.display_scale),
        _facts_section(page.model_facts),
        _params_section(page.params),
        _history_section(page.history) if show_history else "",
        f'<footer>Release {escape(page.release)} · every file and its sha256: '
        f'<a href="{escape(link_prefix)}manifest.json">manifest.json</a></footer>',
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(part for part in parts if part)


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the metrics table: the known metrics first, then any other key."""
    rows: list[tuple[str, str]] = []
    shown = {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "is_unavailable_reason", "precision", "recall"}
    if "fid" in metrics:
        rows.append(("FID ↓", _number(metrics["fid"], 3)))
    if "kid_mean" in metrics:
        rows.append(("KID ↓", _plus_minus(metrics.get("kid_mean"), metrics.get("kid_std"), 5)))
    if "is_mean" in metrics or "is_unavailable_reason" in metrics:
        if metrics.get("is_mean") is None:
            reason = metrics.get("is_unavailable_reason") or "not computed"
            rows.append(("Inception Score ↑", f"unavailable: {reason}"))
        else:
            rows.append(("Inception Score ↑", _plus_minus(metrics.get("is_mean"), metrics.get("is_std"), 3)))
    for key, label in (("precision", "Precision ↑"), ("recall", "Recall ↑")):
        if key in metrics:
            rows.append((label, _number(metrics[key], 3)))
    for key in sorted(set(metrics) - shown):
        rows.append((MEASUREMENT_LABELS.get(key, key), _value_text(metrics[key])))
    return rows


def _header(page: GalleryPage) -> str:
    date = page.published_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    dataset = page.dataset_version or "untracked"
    return (
        "<header><h1>scenegan gallery</h1>"
        f'<p class="meta">Published {escape(date)} · checkpoint {escape(_number(page.checkpoint_kimg, 1))} kimg'
        f" · dataset {escape(dataset)} · release {escape(page.release)}</p></header>"
    )


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section id="notes"><ul class="notes">{items}</ul></section>'


def _metrics_section(metrics: Mapping[str, Any] | None) -> str:
    if metrics is None:
        return '<section id="metrics"><h2>Metrics</h2><p>not evaluated</p></section>'
    return f'<section id="metrics"><h2>Metrics</h2>{_table(metric_rows(metrics), numeric=True)}</section>'


def _image_section(title: str, anchor: str, images: Sequence[ImageRef], link_prefix: str, scale: int) -> str:
    tags = "\n".join(_img(image, link_prefix, scale) for image in images)
    wrapper = f'<div class="samples">{tags}</div>' if anchor == "samples" else tags
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{wrapper}</section>'


def _img(image: ImageRef, link_prefix: str, scale: int) -> str:
    src = escape(link_prefix + image.path)
    return (
        f'<img class="px" src="{src}" alt="{escape(image.alt)}" '
        f'width="{image.width * scale}" height="{image.height * scale}">'
    )


def _facts_section(facts: Sequence[tuple[str, str]]) -> str:
    return f'<section id="model"><h2>Model and dataset</h2>{_table(facts)}</section>'


def _params_section(params: Mapping[str, Any]) -> str:
    text = json.dumps(params, indent=2, sort_keys=True, ensure_ascii=False)
    names = ", ".join(params)
    return (
        f'<section id="params"><h2>Parameters</h2><details><summary>{escape(names)} sections of params.yaml'
        f"</summary><pre>{escape(text)}</pre></details></section>"
    )


def _history_section(history: Sequence[HistoryEntry]) -> str:
    if not history:
        return ""
    rows = "".join(
        "<tr>"
        f'<td><a href="releases/{escape(entry.release)}/index.html">{escape(entry.release)}</a></td>'
        f"<td>{escape(entry.published_at)}</td>"
        f'<td class="num">{escape(_number(entry.checkpoint_kimg, 1))}</td>'
        f'<td class="num">{escape(_number(entry.fid, 3))}</td>'
        "</tr>"
        for entry in history
    )
    head = "<tr><th>release</th><th>published</th><th>kimg</th><th>FID</th></tr>"
    return f'<section id="history"><h2>Earlier releases</h2><table>{head}{rows}</table></section>'


def _table(rows: Sequence[tuple[str, str]], numeric: bool = False) -> str:
    cell = '<td class="num">' if numeric else "<td>"
    body = "".join(f"<tr><th>{escape(label)}</th>{cell}{escape(value)}</td></tr>" for label, value in rows)
    return f"<table>{body}</table>"


def _number(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return str(value)


def _plus_minus(mean: Any, std: Any, digits: int) -> str:
    if mean is None:
        return "n/a"
    if std is None:
        return _number(mean, digits)
    return f"{_number(mean, digits)} ± {_number(std, digits)}"


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
