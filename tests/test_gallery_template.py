"""The gallery page's template: hostile values stay text, a missing variable is an error, the template ships.

Pages are rendered straight from a GalleryPage (no generator, no target), so
these run in milliseconds; tests/test_publish.py covers the page as the
publish stage writes it.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from conftest import REPO_ROOT

from ganlib.publish.page import (
    GalleryPage,
    HistoryEntry,
    ImageRef,
    gallery_context,
    render_gallery_html,
    render_gallery_template,
)

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'


class PageParser(HTMLParser):
    """Every start tag with its attributes, and the text as the browser shows it (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def page(**changes) -> GalleryPage:
    fields = dict(
        release="20260102T030405Z-0123abcd",
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        checkpoint_kimg=2.0,
        dataset_version="0123456789abcdef0123456789abcdef",
        model_facts=[("architecture", "dcgan")],
        metrics={"fid": 12.0},
        notes=["publish.gate is always"],
        grid=ImageRef("grid.png", 16, 16, "samples from fixed seeds"),
        interpolation=ImageRef("interpolation.png", 24, 16, "latent interpolation"),
        samples=[ImageRef("samples/sample_0000.png", 8, 8, "sample 0")],
        params={"train": {"lr_g": 0.0002}, "evaluate": {"metrics": ["fid"]}},
        display_scale=2,
        history=[HistoryEntry("20260101T000000Z-89abcdef", "2026-01-01T00:00:00Z", 1.0, 20.0)],
    )
    return GalleryPage(**{**fields, **changes})


def hostile_page() -> GalleryPage:
    return page(
        params={"train": {"note": SCRIPT, "tag": BREAKOUT}, "evaluate": {"inception_weights": SCRIPT}},
        notes=[BREAKOUT, "&#39; stays as typed"],
        metrics={"fid": 12.0, "is_unavailable_reason": SCRIPT, BREAKOUT: SCRIPT},
        model_facts=[("architecture", BREAKOUT)],
        dataset_version=SCRIPT,
        grid=ImageRef("grid.png", 16, 16, BREAKOUT),
        samples=[ImageRef("javascript:alert(1)", 8, 8, SCRIPT)],
        history=[HistoryEntry(BREAKOUT, SCRIPT, None, None)],
    )


@pytest.mark.parametrize("link_prefix", ["", "releases/20260102T030405Z-0123abcd/"])
def test_hostile_values_are_shown_as_text_never_as_markup(link_prefix):
    html = render_gallery_html(hostile_page(), link_prefix=link_prefix)
    parsed = parse(html)

    assert SCRIPT not in html and BREAKOUT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    text = "".join(parsed.text)
    assert SCRIPT in text and BREAKOUT in text                # the reader sees them, as text
    assert "&#39; stays as typed" in text                     # user text that looks like an entity stays literal
    assert [tag for tag, _ in parsed.tags if tag == "script"] == []
    assert len([tag for tag, _ in parsed.tags if tag == "img"]) == 3   # grid, strip, one sample: none injected
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("src", "href"):
            url = attrs.get(name) or ""
            if tag != "link":   # the favicon's fixed data: URL
                assert ":" not in url.split("/")[0], (tag, attrs)   # relative: no scheme such as javascript:


def test_alt_text_and_params_keep_their_values():
    parsed = parse(render_gallery_html(hostile_page()))
    alts = [attrs["alt"] for tag, attrs in parsed.tags if tag == "img"]
    assert alts == [BREAKOUT, "latent interpolation", SCRIPT]
    assert '"note": "<script>alert(1)</script>"' in "".join(parsed.text)


def test_a_variable_missing_from_the_context_is_an_error_not_a_blank():
    context = gallery_context(page())
    render_gallery_template(context)   # complete: renders

    without_release = {key: value for key, value in context.items() if key != "release"}
    with pytest.raises(jinja2.UndefinedError, match="release"):
        render_gallery_template(without_release)

    grid_without_alt = {key: value for key, value in context["grid"].items() if key != "alt"}
    with pytest.raises(jinja2.UndefinedError, match="alt"):
        render_gallery_template({**context, "grid": grid_without_alt})


def test_every_template_is_package_data():
    """A non-editable install (a wheel) must ship the templates, or the publish stage cannot render."""
    tomllib = pytest.importorskip("tomllib")   # Python >= 3.11
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["ganlib.publish"]
    package = REPO_ROOT / "ganlib" / "publish"
    templates = [path.relative_to(package).as_posix() for path in (package / "templates").iterdir()]
    assert templates
    unshipped = [name for name in templates if not any(fnmatch.fnmatch(name, glob) for glob in globs)]
    assert not unshipped, f"not in pyproject.toml [tool.setuptools.package-data]: {unshipped}"


@pytest.mark.parametrize("keys", ["current", "before the rename"])
def test_the_fid_band_is_shown_as_sampling_noise_not_as_an_interval_on_the_true_fid(keys):
    band = {"fid_noise_low": 214.1, "fid_noise_high": 223.9, "fid_noise_bias": 6.5,
            "fid_noise_resamples": 200, "fid_noise_n": 1000}
    if keys != "current":
        band = {"fid_ci_low": 214.1, "fid_ci_high": 223.9, "fid_bootstrap_bias": 6.5,
                "fid_bootstrap_resamples": 200, "fid_bootstrap_n": 1000}
    metrics = {"fid": 218.8123, **band, "fid_infinity": None,
               "fid_infinity_unavailable_reason": "FID-infinity not reported: 1000 generated samples of 2048-d"}
    text = " ".join(" ".join(parse(render_gallery_html(page(metrics=metrics))).text).split())
    assert "FID ↓ 218.812" in text
    assert ("FID sampling noise [214.100, 223.900]: 95% band over 200 bootstrap resamples of the 1000 generated "
            "samples; reference fixed") in text
    assert "not a confidence interval on the true FID" in text
    assert "FID-infinity FID-infinity not reported: 1000 generated samples" in text
    assert "fid_ci" not in text and "fid_noise_low" not in text   # no raw key names for the band


def test_a_page_without_a_band_says_nothing_about_one():
    text = " ".join(parse(render_gallery_html(page())).text)
    assert "sampling noise" not in text and "FID-infinity" not in text
