"""The gallery's latent walk, truncation table and nearest training images: contents, notes, and a real browser.

A tiny real dcgan generator, a real prepared dataset, and truncation.json /
memorisation.json written by the evaluate stage's own record functions
(ganlib/metrics/truncation_table.py, memorisation.py), so the page reads the
formats evaluation writes.
"""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO_ROOT, load_test_params
from PIL import Image
from test_metrics_support import smooth_images, write_prepared_dataset

from ganlib.data.dataset import open_prepared
from ganlib.metrics.memorisation import (
    CheckedImages,
    ClosestPair,
    MemorisationCheck,
    SpaceCheck,
    memorisation_record,
)
from ganlib.metrics.truncation_table import TruncationRow, truncation_record
from ganlib.models.generator_file import GeneratorInfo
from ganlib.models.registry import rebuild_generator
from ganlib.models.sampling import fixed_latents, to_uint8_images
from ganlib.publish.page import CONTENT_SECURITY_POLICY
from ganlib.publish.run import walk_markdown
from ganlib.publish.stage import publish_generator

LOG = logging.getLogger("test_gallery_sections")
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
BUILD = {"z_dim": 16, "width": 4, "resolution": 32}
PATHS = load_test_params().base.paths
SMALL = ["publish.grid_size=2", "publish.n_samples=2", "publish.interpolation_rows=1", "publish.interpolation_steps=2",
         "publish.batch_size=8", "publish.walk_keyframes=2", "publish.walk_frames_per_keyframe=3", "publish.walk_fps=6",
         "publish.nearest_pairs=3"]
EVAL_SEED, EVAL_N = 7, 40
PAIRS = {"features": [(17, 5, 3.25), (3, 40, 4.5), (17, 6, 5.0), (29, 11, 6.0)], "pixels": [(3, 40, 1.5), (8, 0, 2.5)]}


def make_project(root: Path, *, truncation: bool = True, memorisation: bool | str = True,
                 memorisation_sha: str | None = None, memorisation_z_dim: int = 16) -> None:
    """A prepared dataset and the evaluate stage's truncation.json / memorisation.json under `root`."""
    dataset = open_prepared(write_prepared_dataset(root / PATHS.prepared, smooth_images(48, seed=0, resolution=32)))
    evaluate = root / PATHS.evaluate
    evaluate.mkdir(parents=True, exist_ok=True)
    if truncation:
        rows = [TruncationRow(1.0, 61.25, 0.0512, 0.003, 0.61, 0.32, 0.83, 0.55),
                TruncationRow(0.7, 58.5, 0.0433, 0.002, 0.74, 0.21, 1.12, 0.41)]
        record = truncation_record(rows, EVAL_N, 48, EVAL_SEED, 16, "tiny-random-conv", 5)
        (evaluate / "truncation.json").write_text(json.dumps(record))
    if memorisation:
        (evaluate / "memorisation.json").write_text(json.dumps(
            memorisation_record(None, reason=memorisation) if isinstance(memorisation, str)
            else memorisation_record(memorisation_check(memorisation_sha or dataset.content_hash, memorisation_z_dim))))


def memorisation_check(dataset_sha256: str, z_dim: int) -> MemorisationCheck:
    quantiles = {"p1": 1.0, "p5": 2.0, "p25": 3.0, "p50": 4.0, "p75": 5.0, "p95": 6.0}

    def space(name: str, description: str) -> SpaceCheck:
        pairs = tuple(ClosestPair(sample, training, distance) for sample, training, distance in PAIRS[name])
        return SpaceCheck(description, 0.075, 3.5, 3, quantiles, quantiles, pairs)

    images = CheckedImages(EVAL_N, EVAL_SEED, z_dim, np.arange(48), 48, None, "0123456789abcdef", dataset_sha256)
    return MemorisationCheck(0.05, space("features", "tiny features, Euclidean distance"),
                             space("pixels", "32x32 pixels, RMS difference"), 32, images)


def generator() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        return rebuild_generator("dcgan", BUILD).eval()


def publish(root: Path, *overrides: str):
    params = load_test_params([*SMALL, f"publish.target={root / 'gallery'}", *overrides])
    info = GeneratorInfo(arch="dcgan", z_dim=16, resolution=32, kimg=2.0, data_md5="0123456789abcdef",
                         dataset_sha256=open_prepared(root / PATHS.prepared).content_hash,
                         params_fingerprint="0123456789abcdef")
    return publish_generator(generator(), info, params, LOG, root, now=T0)


def release_files(root: Path, report) -> dict[str, bytes]:
    base = root / "gallery" / "releases" / report.release
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One release with all three sections."""
    root = tmp_path_factory.mktemp("sections")
    make_project(root)
    report = publish(root)
    return root, report


def test_the_page_shows_a_looping_walk_video_allowed_by_its_security_policy(full):
    root, report = full
    files = release_files(root, report)
    html = (root / "gallery/index.html").read_text()
    assert report.walk == f"releases/{report.release}/walk.mp4"
    assert files["walk.mp4"][4:8] == b"ftyp"                      # an MP4 container
    assert f'<video src="releases/{report.release}/walk.mp4"' in html and "autoplay loop muted" in html
    assert "media-src 'self'" in CONTENT_SECURITY_POLICY and CONTENT_SECURITY_POLICY.replace("'", "&#x27;") in html
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src" not in CONTENT_SECURITY_POLICY
    assert "the latents of seeds 2024 to 2025" in html
    manifest = json.loads((root / "gallery/manifest.json").read_text())
    assert f"releases/{report.release}/walk.mp4" in manifest["files"]


def test_the_truncation_table_has_a_row_per_psi(full):
    root, _ = full
    html = (root / "gallery/index.html").read_text()
    start = html.index('<section id="truncation">')
    table = html[start:html.index("</section>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    assert cells[0] == ["psi", "FID ↓", "KID ↓", "precision ↑", "recall ↑", "density", "coverage ↑"]
    assert cells[1] == ["1.0", "61.25", "0.0512", "0.61", "0.32", "0.83", "0.55"]
    assert cells[2][:2] == ["0.7", "58.5"] and len(cells) == 3
    assert "40 samples per psi" in table


def test_nearest_pairs_show_the_regenerated_sample_beside_the_training_image(full):
    root, report = full
    files = release_files(root, report)
    html = (root / "gallery/index.html").read_text()
    latents = fixed_latents(EVAL_N, 16, EVAL_SEED)
    training = open_prepared(root / PATHS.prepared).images
    shown = re.findall(
        r'src="releases/[^/]+/nearest/sample_(\d+)\.png".*?src="releases/[^/]+/nearest/training_(\d+)\.png"', html)
    # The first three pairs of each space (publish.nearest_pairs=3), nearest first, features then pixels.
    assert [(int(s), int(t)) for s, t in shown] == [(17, 5), (3, 40), (17, 6), (3, 40), (8, 0)]
    for sample, index in {(17, 5), (3, 40), (17, 6), (8, 0)}:
        with torch.no_grad():
            expected = to_uint8_images(generator()(latents[sample:sample + 1]))[0]
        assert np.array_equal(pixels(files[f"nearest/sample_{sample:05d}.png"]), expected)
        assert np.array_equal(pixels(files[f"nearest/training_{index:06d}.png"]), training[index])
    assert "sample 17 · training image 5 · distance 3.25" in html
    assert "memorisation 0.075 (fresh images score about 0.05, copies 1)" in html


def notes(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="omitted" id="(\w+)">(.*?)</p>', html))


def test_each_absent_section_is_one_line_saying_why(tmp_path):
    make_project(tmp_path, truncation=False, memorisation=False)
    report = publish(tmp_path, "publish.walk_keyframes=0")
    html = (tmp_path / "gallery/index.html").read_text()
    assert notes(html) == {
        "truncation": "No truncation table: results/evaluate/truncation.json is absent (the evaluate stage writes it).",
        "walk": "No latent walk: publish.walk_keyframes is 0.",
        "nearest": "No nearest training images: results/evaluate/memorisation.json is absent (the evaluate stage "
                   "writes it).",
    }
    assert "<video" not in html and "<h2>Truncation" not in html and "Nearest training images</h2>" not in html
    assert report.walk is None
    assert not any("walk" in name or "nearest" in name for name in release_files(tmp_path, report))


@pytest.mark.parametrize("setup, note", [
    ({"memorisation": "memorisation is not in evaluate.metrics"},
     "the memorisation check did not run (memorisation is not in evaluate.metrics)"),
    ({"memorisation_sha": "f" * 64}, "was measured against other prepared data"),
    ({"memorisation_z_dim": 8}, "was made for a generator with z_dim 8, not 16"),
])
def test_pairs_that_cannot_be_found_again_are_a_note_not_wrong_images(tmp_path, setup, note):
    make_project(tmp_path, truncation=False, **setup)
    publish(tmp_path, "publish.walk_keyframes=0")
    assert note in notes((tmp_path / "gallery/index.html").read_text())["nearest"]


def test_the_walk_artifact_links_the_published_video(full):
    root, report = full
    markdown = walk_markdown(report)
    video = (root / "gallery" / report.walk).resolve().as_uri()
    assert f"[walk.mp4]({video})" in markdown and report.release in markdown
    assert walk_markdown(type(report)(**{**report.as_record(), "walk": None})) is None


def test_publish_depends_on_the_files_its_sections_read():
    deps = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["publish"]["deps"]
    assert "${base.paths.evaluate}/truncation.json" in deps and "${base.paths.evaluate}/memorisation.json" in deps


# ----------------------------------------------------------------------------- in a real browser


VIDEO_STATE = """new Promise(resolve => {
  const video = document.querySelector('video');
  const state = () => ({readyState: video.readyState, width: video.videoWidth, error: video.error && video.error.code,
                        loop: video.loop, muted: video.muted});
  if (video.readyState >= 2) return resolve(state());
  video.addEventListener('loadeddata', () => resolve(state()));
  video.addEventListener('error', () => resolve(state()));
  setTimeout(() => resolve(state()), 10000);
})"""


def test_in_chromium_every_image_and_the_video_load_with_a_clean_console(full, tmp_path):
    from test_gallery_browser import CHROMIUM, IMAGES_STATE, headless_chromium, open_page, serve_directory

    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (install it with `apt-get install chromium` or `make browser`)")
    root, _ = full
    with serve_directory(root / "gallery") as site, headless_chromium(tmp_path / "profile") as devtools:
        page = open_page(devtools)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.send(f"{domain}.enable")
            page.send("Page.navigate", url=f"{site}/index.html")
            page.wait_for_event("Page.loadEventFired")
            images = page.evaluate(IMAGES_STATE)
            video = page.evaluate(VIDEO_STATE)
            problems = page.problems()
        finally:
            page.close()

    assert images["broken"] == [] and images["count"] == 1 + 1 + 2 + 2 * 5   # grid, strip, samples, 5 pairs
    assert images["headings"] == ["Metrics", "Truncation", "Samples from fixed seeds",
                                  "Latent interpolation (slerp between fixed latents, one pair per row)",
                                  "Latent walk", "Individual samples", "Nearest training images", "Model and dataset",
                                  "Parameters"]
    assert video["error"] is None and video["readyState"] >= 2 and video["width"] == 256, video
    assert video["loop"] and video["muted"]
    assert images["scripts"] == 0 and not images["overflow"]
    assert problems == []


def test_the_metrics_table_labels_density_coverage_and_memorisation_against_its_baseline():
    from ganlib.publish.page import measurement_rows, metric_rows

    metrics = {"fid": 10.0, "precision": 0.5, "recall": 0.4, "density": 0.9, "coverage": 0.7,
               "prdc_k": 5, "memorisation": 0.0625, "memorisation_pixels": 0.05,
               "memorisation_baseline": 0.05, "memorisation_n": 1000, "is_unavailable_reason": "not in /home/x"}
    rows = dict(metric_rows(metrics))
    details = dict(measurement_rows(metrics))
    assert rows["Density (~1 typical)"] == "0.900" and rows["Coverage ↑"] == "0.700"
    assert rows["Memorisation (Inception features)"] == "0.062 (fresh images ~0.05, copies 1)"
    assert rows["Memorisation (32x32 pixels)"] == "0.050 (fresh images ~0.05, copies 1)"
    # How they were measured sits in the collapsed details, without the machine's reasons.
    assert details["k of precision/recall/density/coverage"] == "5" and "memorisation_baseline" not in details
    assert "k of precision/recall/density/coverage" not in rows and "/home/x" not in str(details)
