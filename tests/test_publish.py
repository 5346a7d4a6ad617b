"""The publish stage: gallery contents, checksums, escaping, the FID gate, failure safety, determinism.

A tiny real generator (Linear + tanh) stands in for the trained one; targets
are real local directories and real fsspec filesystems (memory://, file://).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from conftest import load_test_params
from file_audit import file_access, under
from fsspec.implementations.memory import MemoryFileSystem
from PIL import Image
from torch import nn

from ganlib.errors import UserFacingError
from ganlib.models.sampling import fixed_latents
from ganlib.publish.fid_settings import fid_settings
from ganlib.publish.gate import FidBand, FidComparison, compare_fids, comparison_markdown
from ganlib.publish.images import GeneratorOutputError, interpolation_latents
from ganlib.publish.stage import PublishError, publish_generator
from ganlib.publish.targets import PublishTargetError

LOG = logging.getLogger("test_publish")
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SMALL = [
    "publish.grid_size=2",
    "publish.n_samples=5",
    "publish.interpolation_rows=2",
    "publish.interpolation_steps=3",
    "publish.batch_size=2",
    "publish.walk_keyframes=0",   # the latent walk (an MP4 per release) has its own tests: test_gallery_sections.py
]
GENERATED_NAME = re.compile(
    r"^(index\.html|manifest\.json|releases/\d{8}T\d{6}Z-[0-9a-f]{8}/"
    r"(index\.html|manifest\.json|generator\.pt|grid\.(png|webp)|interpolation\.(png|webp)|samples/sample_\d{4}\.(png|webp)))$"
)


class TinyGenerator(nn.Module):
    """z [B, z_dim] -> [B, 3, R, R] in [-1, 1], with weights fixed by `seed`."""

    def __init__(self, z_dim: int = 8, resolution: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        self.linear = nn.Linear(z_dim, 3 * resolution * resolution)
        rng = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=rng))
            self.linear.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(z)).view(-1, 3, self.resolution, self.resolution)


class FailingGenerator(TinyGenerator):
    """Fails on its n-th call: a crash half-way through writing a release."""

    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.calls, self.fail_on_call = 0, fail_on_call

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash while publishing")
        return super().forward(z)


class NaNGenerator(TinyGenerator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0], 3, self.resolution, self.resolution), float("nan"))


@dataclass(frozen=True)
class Info:
    z_dim: int = 8
    resolution: int = 8
    kimg: float = 2.0
    arch: str = "dcgan"
    data_md5: str | None = "0123456789abcdef0123456789abcdef"
    dataset_sha256: str | None = "f" * 64
    params_fingerprint: str | None = "a1b2c3d4e5f60718"
    classes: tuple[str, ...] = ()


def write_metrics(root: Path, fid: float | None, **extra) -> None:
    path = root / "results" / "evaluate" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**default_metrics(fid), **extra}))


def first_value(setting: str):
    """What write_metrics writes for `setting` unless told otherwise."""
    return default_metrics(None)[setting]


def default_metrics(fid: float | None) -> dict:
    return {   # the keys ganlib.metrics.report.EvaluationReport writes
        "fid": fid, "kid_mean": 0.01, "kid_std": 0.002, "kid_subset_size": 32, "is_mean": None, "is_std": None,
        "is_unavailable_reason": "no IS weights", "precision": None, "recall": None, "n_samples": 64,
        "n_reference": 64, "batch_size": 16, "seed": 1, "extractor": "tiny-random-conv",
        "extractor_description": "a small fixed random network", "data_md5": Info.data_md5,
        "dataset_sha256": Info.dataset_sha256, "checkpoint_kimg": 2.0, "resolution": 8,
        "device": "cpu", "notes": ["IS skipped: no weights"],
    }


def publish(root: Path, target: str, *, gate: str = "always", generator: nn.Module | None = None,
            info: Info = Info(), overrides: tuple[str, ...] = (), now: datetime = T0):
    params = load_test_params([*SMALL, f"publish.target={target}", f"publish.gate={gate}", *overrides])
    return publish_generator(generator or TinyGenerator(), info, params, LOG, root, now)


def snapshot(target: str, root: Path) -> dict[str, bytes]:
    """Every file under a target (local path or fsspec URL), relative path -> bytes."""
    if "://" not in target:
        base = root / target
        return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
    fs, path = fsspec.core.url_to_fs(target)
    path = path.rstrip("/")
    return {name[len(path) + 1:]: fs.cat_file(name) for name in sorted(fs.find(path))}


def release_relative(files: dict[str, bytes]) -> dict[str, bytes]:
    """Release files keyed by their name inside the release directory (the id removed)."""
    return {name.split("/", 2)[2]: data for name, data in files.items() if name.startswith("releases/")}


def memory_url() -> str:
    return f"memory://gallery-{uuid.uuid4().hex}"


@pytest.fixture(params=["local", "memory"])
def target(request, tmp_path) -> str:
    return str(tmp_path / "site" / "gallery") if request.param == "local" else memory_url()


# ----------------------------------------------------------------------------- contents


def test_manifest_lists_every_file_with_its_sha256(tmp_path, target):
    write_metrics(tmp_path, fid=31.5)
    report = publish(tmp_path, target)
    files = snapshot(target, tmp_path)
    manifest = json.loads(files["manifest.json"])

    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
    assert report.manifest_sha256 == hashlib.sha256(files["manifest.json"]).hexdigest()

    release = f"releases/{manifest['release']}/"
    release_manifest = json.loads(files[release + "manifest.json"])
    in_release = {n[len(release):] for n in files if n.startswith(release)}
    assert set(release_manifest["files"]) == in_release - {"manifest.json"}
    assert manifest["fid"] == 31.5 and manifest["checkpoint_kimg"] == 2.0
    # 1 grid + 5 samples + 1 strip + 2 pages + 2 manifests
    assert report.files == len(files) == 11


def test_images_have_the_configured_sizes_and_come_from_the_generator(tmp_path):
    target = str(tmp_path / "gallery")
    publish(tmp_path, target)
    files = release_relative(snapshot(target, tmp_path))
    grid = np.asarray(Image.open(io.BytesIO(files["grid.png"])))
    strip = np.asarray(Image.open(io.BytesIO(files["interpolation.png"])))
    pad, r = 2, 8
    assert grid.shape == (2 * (r + pad) + pad, 2 * (r + pad) + pad, 3)
    assert strip.shape == (2 * (r + pad) + pad, 3 * (r + pad) + pad, 3)
    assert sorted(n for n in files if n.startswith("samples/")) == [f"samples/sample_{i:04d}.png" for i in range(5)]

    # The first sample is G(first sample latent), quantised to uint8.
    z = fixed_latents(1, 8, seed=2024)
    with torch.no_grad():
        expected = ((TinyGenerator()(z)[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    first = np.asarray(Image.open(io.BytesIO(files["samples/sample_0000.png"])))
    assert np.abs(first.astype(float) - expected).max() <= 1


def test_published_samples_are_the_images_evaluation_measures_for_the_same_seed(tmp_path, monkeypatch):
    from test_metrics_support import smooth_images, tiny_params, write_prepared_dataset

    from ganlib.metrics.evaluate import score_generator
    from ganlib.metrics.sources import SeededGenerator

    seed, n = 31, 5
    # What the feature extractor is handed: the uint8 images SeededGenerator returns to the evaluation loop.
    measured: list[torch.Tensor] = []
    measure = SeededGenerator.forward
    monkeypatch.setattr(SeededGenerator, "forward", lambda self, z: measured.append(measure(self, z)) or measured[-1])
    params = tiny_params(f"evaluate.seed={seed}", f"evaluate.n_samples={n}", "evaluate.batch_size=3", "evaluate.metrics=[fid]")
    write_prepared_dataset(tmp_path / params.base.paths.prepared, smooth_images(8, seed=1, resolution=Info.resolution))
    score_generator(TinyGenerator(), replace(Info(), dataset_sha256=None), params, LOG, tmp_path)
    evaluated = torch.cat(measured).permute(0, 2, 3, 1).numpy()

    target = str(tmp_path / "gallery")
    publish(tmp_path, target, overrides=(f"publish.seed={seed}", f"publish.n_samples={n}"))
    files = release_relative(snapshot(target, tmp_path))
    published = np.stack([np.asarray(Image.open(io.BytesIO(files[f"samples/sample_{i:04d}.png"]))) for i in range(n)])
    assert evaluated.shape == published.shape == (n, Info.resolution, Info.resolution, 3)
    assert np.array_equal(published, evaluated)


def test_publish_never_reads_the_raw_dataset_and_names_files_itself(tmp_path):
    raw = tmp_path / load_test_params().base.paths.raw
    raw.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(raw / "holiday_IMG_4711.png")
    target = str(tmp_path / "gallery")
    with file_access() as accesses:
        publish(tmp_path, target)
    assert under(accesses, raw) == []   # not opened, not even listed
    files = snapshot(target, tmp_path)
    assert all(GENERATED_NAME.match(name) for name in files), sorted(files)
    assert not any(b"IMG_4711" in data or "IMG_4711" in name for name, data in files.items())

    with file_access() as control:  # the tripwire sees a listing and a read there
        [path.read_bytes() for path in raw.iterdir()]
    assert {a.event for a in under(control, raw)} >= {"open"} and len(under(control, raw)) >= 2


def test_webp_images_hold_the_same_pixels_as_png(tmp_path):
    png, webp = str(tmp_path / "png"), str(tmp_path / "webp")
    publish(tmp_path, png)
    publish(tmp_path, webp, overrides=("publish.image_format=webp",))
    png_files, webp_files = release_relative(snapshot(png, tmp_path)), release_relative(snapshot(webp, tmp_path))
    for name in ("grid", "interpolation", "samples/sample_0003"):
        a = np.asarray(Image.open(io.BytesIO(png_files[f"{name}.png"])))
        b = np.asarray(Image.open(io.BytesIO(webp_files[f"{name}.webp"])).convert("RGB"))
        assert np.array_equal(a, b), name
    assert b".webp" in snapshot(webp, tmp_path)["index.html"]


# ----------------------------------------------------------------------------- the page


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_page_escapes_every_injected_text(tmp_path):
    attack = "<script>alert('x')</script>"
    write_metrics(tmp_path, fid=12.0, is_unavailable_reason=attack, **{"<b>metric</b>": attack})
    info = Info(arch='"><img src=x onerror=alert(1)>', data_md5=attack)
    target = str(tmp_path / "gallery")
    publish(tmp_path, target, info=info, overrides=(f"evaluate.inception_weights={json.dumps(attack)}",))
    files = snapshot(target, tmp_path)

    for name in ("index.html", next(n for n in files if n.endswith("/index.html"))):
        page = files[name].decode()
        assert "<script" not in page.lower()
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page   # shown, as text
        assert "&lt;b&gt;metric&lt;/b&gt;" in page
        parser = TagCollector()
        parser.feed(page)
        allowed = {"html", "head", "meta", "link", "title", "style", "body", "header", "h1", "h2", "p", "section",
                   "ul", "li", "table", "tr", "th", "td", "img", "div", "pre", "footer", "a", "details", "summary"}
        assert {tag for tag, _ in parser.tags} <= allowed
        for tag, attrs in parser.tags:
            assert not any(key.startswith("on") for key in attrs), (tag, attrs)
            if tag == "img":
                assert not re.match(r"^[a-z]+:|^/", attrs["src"]), attrs["src"]   # relative links only
                assert attrs["src"] in {n.removeprefix(name.removesuffix("index.html")) for n in files}


def test_page_shows_metrics_dataset_kimg_date_and_params(tmp_path):
    write_metrics(tmp_path, fid=12.3456)
    target = str(tmp_path / "gallery")
    publish(tmp_path, target, overrides=("train.lr_g=0.000321",))
    page = snapshot(target, tmp_path)["index.html"].decode()
    for text in ("12.346", "0.01000 ± 0.00200", "Inception Score ↑", "not measured for this release", Info.data_md5,
                 "2.0 kimg", "2026-01-02 03:04:05 UTC", "0.000321", "tiny-random-conv", "IS skipped: no weights"):
        assert text in page, text
    # Why IS is missing names the publishing machine's files and commands: the log has it, the page does not.
    assert "not evaluated" not in page and "no IS weights" not in page and "publish.gate" not in page


def test_missing_metrics_publish_ungated_as_not_evaluated(tmp_path):
    target = str(tmp_path / "gallery")
    report = publish(tmp_path, target)
    files = snapshot(target, tmp_path)
    assert report.status == "published" and report.fid is None
    assert "not evaluated" in files["index.html"].decode()
    assert json.loads(files["manifest.json"])["fid"] is None


# ----------------------------------------------------------------------------- the gate


def test_gate_publishes_better_fid_and_leaves_the_gallery_untouched_otherwise(tmp_path, target):
    write_metrics(tmp_path, fid=20.0)
    first = publish(tmp_path, target, gate="better_fid")
    assert first.status == "published" and first.previous_fid is None

    before = snapshot(target, tmp_path)
    write_metrics(tmp_path, fid=25.0)
    worse = publish(tmp_path, target, gate="better_fid", generator=TinyGenerator(seed=1), now=T0 + timedelta(hours=1))
    assert worse.status == "skipped" and worse.files == 0
    assert (worse.previous_fid, worse.release, worse.manifest_sha256) == (20.0, first.release, first.manifest_sha256)
    assert snapshot(target, tmp_path) == before

    write_metrics(tmp_path, fid=20.0)   # equal is not better
    assert publish(tmp_path, target, gate="better_fid").status == "skipped"
    assert snapshot(target, tmp_path) == before

    write_metrics(tmp_path, fid=15.0)
    better = publish(tmp_path, target, gate="better_fid", generator=TinyGenerator(seed=2), now=T0 + timedelta(hours=2))
    assert better.status == "published" and better.previous_fid == 20.0 and better.release != first.release
    manifest = json.loads(snapshot(target, tmp_path)["manifest.json"])
    assert manifest["fid"] == 15.0 and manifest["history"][0]["release"] == first.release

    record = json.loads((tmp_path / "results" / "publish.json").read_text())
    assert record["status"] == "published" and record["previous_fid"] == 20.0 and record["fid"] == 15.0
    assert record["manifest_sha256"] == better.manifest_sha256 and record["date"] == "2026-01-02T05:04:05Z"


def test_skip_is_recorded(tmp_path):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=10.0)
    publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=11.0)
    publish(tmp_path, target, gate="better_fid")
    record = json.loads((tmp_path / "results" / "publish.json").read_text())
    assert record["status"] == "skipped"
    assert "does not beat the published 10.000" in record["reason"]
    assert (record["fid"], record["previous_fid"], record["target"]) == (11.0, 10.0, target)


@pytest.mark.parametrize(
    "setting,value,shown",
    [
        ("n_samples", 5000, "n_samples 5000 vs 64"),
        ("n_reference", 1000, "n_reference 1000 vs 64"),
        ("extractor", "fid-inception-v3-tf2015", "extractor fid-inception-v3-tf2015 vs tiny-random-conv"),
        ("dataset_sha256", "e" * 64, f"dataset_sha256 {'e' * 12} vs {'f' * 12}"),
        ("seed", 7, "seed 7 vs 1"),
        ("extractor", "tiny-random-conv@bf16", "extractor tiny-random-conv@bf16 vs tiny-random-conv"),  # precision
    ],
)
def test_gate_publishes_and_says_why_when_an_incomparable_release_stores_no_generator(tmp_path, setting, value, shown):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=20.0)
    first = publish(tmp_path, target, gate="better_fid")   # no generator_file: the release keeps no generator.pt

    # A worse FID, measured differently, against a release that cannot be re-scored: published, as before re-scoring.
    info = replace(Info(), dataset_sha256=value) if setting == "dataset_sha256" else Info()
    write_metrics(tmp_path, fid=25.0, **{setting: value})
    second = publish(tmp_path, target, gate="better_fid", info=info, now=T0 + timedelta(hours=1))
    assert second.status == "published" and second.release != first.release
    record = json.loads((tmp_path / "results" / "publish.json").read_text())
    assert "previous FID 20.000" in record["reason"] and f"not comparable: {shown}" in record["reason"]
    assert f"not re-scored: release {first.release} stores no generator" in record["reason"]
    assert record["previous_fid"] == 20.0 and record["fid"] == 25.0
    comparison = record["comparison"]
    assert comparison["previous_scored_as"] == "not_comparable" and comparison["rule"] is None
    assert comparison["differences"] == [shown] and comparison["previous_fid_rescored"] is None
    assert (comparison["settings"][setting], comparison["previous_settings"][setting]) == (value, first_value(setting))
    manifest = json.loads(snapshot(target, tmp_path)["manifest.json"])
    assert manifest["fid_settings"][setting] == value

    # Measured like the gallery now on show, a worse FID is gated again.
    write_metrics(tmp_path, fid=26.0, **{setting: value})
    assert publish(tmp_path, target, gate="better_fid", info=info, now=T0 + timedelta(hours=2)).status == "skipped"


def test_manifest_records_the_settings_its_fid_was_measured_with(tmp_path):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=20.0)
    publish(tmp_path, target)
    manifest = json.loads(snapshot(target, tmp_path)["manifest.json"])
    assert manifest["fid_settings"] == {
        "extractor": "tiny-random-conv", "n_samples": 64, "n_reference": 64, "dataset_sha256": Info.dataset_sha256,
        "seed": 1,
    }
    assert "generator" not in manifest   # publish_generator was given no generator file


def test_gate_reads_the_settings_of_a_gallery_published_before_they_were_recorded(tmp_path):
    target = tmp_path / "gallery"
    write_metrics(tmp_path, fid=20.0)
    publish(tmp_path, str(target))
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["fid_settings"]  # an older manifest: its whole metrics.json is all it has (seed included)
    (target / "manifest.json").write_text(json.dumps(manifest))
    write_metrics(tmp_path, fid=25.0)
    assert publish(tmp_path, str(target), gate="better_fid").status == "skipped"
    write_metrics(tmp_path, fid=25.0, n_samples=1000)
    report = publish(tmp_path, str(target), gate="better_fid")
    assert report.status == "published" and "not comparable: n_samples 1000 vs 64" in report.reason


def test_gate_without_metrics_is_a_clear_error_and_changes_nothing(tmp_path):
    target = str(tmp_path / "gallery")
    publish(tmp_path, target)
    before = snapshot(target, tmp_path)
    with pytest.raises(PublishError, match=r"metrics\.json does not exist.*evaluate"):
        publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=None)
    with pytest.raises(PublishError, match="has no fid"):
        publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=5.0, checkpoint_kimg=1.0)
    with pytest.raises(PublishError, match="1.0 kimg"):
        publish(tmp_path, target, gate="better_fid")
    assert snapshot(target, tmp_path) == before


def test_ungated_publish_of_mismatched_metrics_warns_on_the_page(tmp_path):
    write_metrics(tmp_path, fid=5.0, checkpoint_kimg=1.0)
    target = str(tmp_path / "gallery")
    publish(tmp_path, target)
    assert "warning: metrics are for the checkpoint at 1.0 kimg" in snapshot(target, tmp_path)["index.html"].decode()


# ----------------------------------------------------------------------------- the noise band


@pytest.mark.parametrize(
    "new,previous,replace_,rule",
    [
        (FidBand(17.0, 16.2, 18.0), FidBand(20.0, 19.0, 21.0), True, "noise_bands_apart"),
        (FidBand(18.5, 17.6, 19.4), FidBand(20.0, 19.0, 21.0), False, "noise_bands_apart"),  # better, within noise
        (FidBand(18.0, 17.0, 19.0), FidBand(20.0, 19.0, 21.0), False, "noise_bands_apart"),  # touching is overlap
        (FidBand(18.5, 17.6, 19.4), FidBand(20.0), True, "band_below_previous_fid"),
        (FidBand(19.5, 18.6, 20.4), FidBand(20.0), False, "band_below_previous_fid"),
        (FidBand(19.9), FidBand(20.0, 19.0, 21.0), True, "strict"),   # no band now: strict, the old band unused
        (FidBand(20.0), FidBand(20.0), False, "strict"),
    ],
)
def test_rule_replaces_only_below_the_noise_band(new, previous, replace_, rule):
    outcome = compare_fids(new, previous)
    assert (outcome.replace, outcome.rule) == (replace_, rule)
    assert f"{new.fid:.6g}" in outcome.text or f"{new.high:.6g}" in outcome.text


def test_gate_with_recorded_bands_needs_the_new_band_wholly_below_the_old(tmp_path, target):
    write_metrics(tmp_path, fid=20.0, fid_noise_low=19.0, fid_noise_high=21.0)
    first = publish(tmp_path, target, gate="better_fid")
    before = snapshot(target, tmp_path)

    # Lower, but by less than the noise: the bands overlap, the gallery stays.
    write_metrics(tmp_path, fid=18.5, fid_noise_low=17.6, fid_noise_high=19.4)
    within = publish(tmp_path, target, gate="better_fid", generator=TinyGenerator(seed=1), now=T0 + timedelta(hours=1))
    assert within.status == "skipped" and snapshot(target, tmp_path) == before
    record = json.loads((tmp_path / "results" / "publish.json").read_text())
    assert "does not beat the published 20.000 as recorded" in record["reason"]
    assert record["comparison"] == {
        "previous_scored_as": "recorded", "rule": "noise_bands_apart", "rule_text": within.comparison["rule_text"],
        "fid": 18.5, "fid_noise_low": 17.6, "fid_noise_high": 19.4,
        "previous_fid_recorded": 20.0, "previous_fid_rescored": None, "previous_fid_compared": 20.0,
        "previous_fid_noise_low": 19.0, "previous_fid_noise_high": 21.0,
        "settings": fid_settings(default_metrics(18.5)), "previous_settings": fid_settings(default_metrics(20.0)),
        "differences": [], "previous_generator_sha256": None,
    }
    assert "[17.6, 19.4]" in record["comparison"]["rule_text"] and "[19, 21]" in record["reason"]

    # Lower by more than the noise: published.
    write_metrics(tmp_path, fid=17.0, fid_noise_low=16.2, fid_noise_high=18.0)
    beyond = publish(tmp_path, target, gate="better_fid", generator=TinyGenerator(seed=2), now=T0 + timedelta(hours=2))
    assert beyond.status == "published" and beyond.previous_release == first.release
    assert beyond.comparison["rule"] == "noise_bands_apart"


def test_gate_reads_the_band_of_a_release_recorded_under_the_old_key_names(tmp_path):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=20.0, fid_ci_low=19.0, fid_ci_high=21.0)   # metrics.json before fid_noise_*
    publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=18.5, fid_noise_low=17.6, fid_noise_high=19.4)
    report = publish(tmp_path, target, gate="better_fid", now=T0 + timedelta(hours=1))
    assert report.status == "skipped" and report.comparison["rule"] == "noise_bands_apart"
    assert (report.comparison["previous_fid_noise_low"], report.comparison["previous_fid_noise_high"]) == (19.0, 21.0)


def test_gate_without_a_band_compares_strictly_and_says_so(tmp_path):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=20.0, fid_noise_low=19.0, fid_noise_high=21.0)
    publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=19.9)   # evaluate.fid_bootstrap: 0 leaves the band out of metrics.json
    report = publish(tmp_path, target, gate="better_fid", now=T0 + timedelta(hours=1))
    assert report.status == "published" and report.comparison["rule"] == "strict"
    assert "evaluate.fid_bootstrap is 0" in report.comparison["rule_text"] and "strict" in report.reason


def test_gate_markdown_shows_both_fids_bands_settings_and_rule(tmp_path):
    target = str(tmp_path / "gallery")
    write_metrics(tmp_path, fid=20.0, fid_noise_low=19.0, fid_noise_high=21.0)
    publish(tmp_path, target, gate="better_fid")
    write_metrics(tmp_path, fid=18.5, fid_noise_low=17.6, fid_noise_high=19.4)
    report = publish(tmp_path, target, gate="better_fid", now=T0 + timedelta(hours=1))
    text = comparison_markdown(report.status, report.reason, FidComparison(**report.comparison))
    for expected in ("**Publish skipped**", "noise_bands_apart", "| this run | 18.5 | [17.6, 19.4] |",
                     "| published, as recorded | 20 | [19, 21] |", "| seed | 1 | 1 |",
                     f"| dataset_sha256 | {'f' * 12} | {'f' * 12} |"):
        assert expected in text, expected


# ----------------------------------------------------------------------------- re-scoring the published generator

# Real dcgan generators saved as generator.pt, scored by the evaluate stage's own code with the
# tiny registered extractor: 40 samples, a 20-resample band. Evaluation also computes KID; the
# gate's re-scoring computes FID only, and must still match evaluation's FID and band exactly.
RESCORE = (
    *SMALL,
    "evaluate.extractor=tiny-random-conv", "evaluate.device=cpu", "evaluate.metrics=[fid,kid]",
    "evaluate.kid_subsets=5", "evaluate.kid_subset_size=16",
    "evaluate.n_samples=40", "evaluate.n_reference=0", "evaluate.batch_size=20",
    "evaluate.fid_bootstrap=20", "evaluate.fid_infinity=false", "publish.gate=better_fid",
)
BUILD = {"z_dim": 16, "width": 4, "resolution": 32}


def rescore_params(target: Path, *overrides: str):
    return load_test_params([*RESCORE, f"publish.target={target}", *overrides])


def prepared_data(root: Path):
    """The prepared dataset every generator here is scored against (written on first use)."""
    from test_metrics_support import smooth_images, write_prepared_dataset

    from ganlib.data.dataset import open_prepared

    path = root / load_test_params().base.paths.prepared
    if not path.exists():
        write_prepared_dataset(path, smooth_images(48, seed=0, resolution=32))
    return open_prepared(path)


def train_stand_in(root: Path, weights_seed: int, kimg: float) -> Path:
    """A real dcgan generator.pt (random weights fixed by `weights_seed`) where the train stage writes it."""
    from ganlib.models.registry import rebuild_generator
    from ganlib.models.generator_file import GeneratorInfo, save_generator

    dataset = prepared_data(root)
    with torch.random.fork_rng():
        torch.manual_seed(weights_seed)
        generator = rebuild_generator("dcgan", BUILD)
    info = GeneratorInfo(arch="dcgan", z_dim=16, resolution=32, kimg=kimg, data_md5=dataset.data_md5,
                         dataset_sha256=dataset.content_hash, params_fingerprint="0123456789abcdef")
    path = root / load_test_params().base.paths.train / "generator.pt"
    save_generator(path, generator, info, BUILD)
    return path


def evaluate(root: Path, params) -> dict:
    from ganlib.metrics.evaluate import evaluate_generator

    evaluate_generator(params, LOG, root)
    return json.loads((root / params.base.paths.evaluate / "metrics.json").read_text())


def rewrite_metrics(root: Path, **values) -> None:
    path = root / "results" / "evaluate" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def set_recorded_fid(target: Path, fid: float) -> None:
    """Change what the published manifest recorded as its FID (the re-scored number must decide, not this)."""
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "fid": fid}))


def test_release_stores_its_generator_with_its_sha256(tmp_path):
    from ganlib.publish.stage import publish_gallery

    target = tmp_path / "gallery"
    path = train_stand_in(tmp_path, weights_seed=1, kimg=1.0)
    report = publish_gallery(rescore_params(target, "publish.gate=always"), LOG, tmp_path)
    files = snapshot(str(target), tmp_path)
    stored = files[f"releases/{report.release}/generator.pt"]
    manifest = json.loads(files["manifest.json"])
    assert stored == path.read_bytes()
    assert manifest["generator"] == {"file": "generator.pt", "sha256": hashlib.sha256(stored).hexdigest()}
    assert manifest["files"][f"releases/{report.release}/generator.pt"] == manifest["generator"]["sha256"]


def test_other_settings_rescore_the_published_generator_and_decide_on_that_number(tmp_path):
    from ganlib.publish.stage import publish_gallery

    target = tmp_path / "gallery"
    seed1, seed2 = rescore_params(target, "evaluate.seed=1"), rescore_params(target, "evaluate.seed=2")
    train_stand_in(tmp_path, weights_seed=1, kimg=1.0)
    recorded = evaluate(tmp_path, seed1)
    first = publish_gallery(seed1, LOG, tmp_path)
    assert first.status == "published"
    # What the evaluate stage says of the published generator under this run's settings (seed 2).
    expected = evaluate(tmp_path, seed2)
    assert expected["fid"] != recorded["fid"]
    old_low, old_high = expected["fid_noise_low"], expected["fid_noise_high"]
    assert old_low < expected["fid"] < old_high

    train_stand_in(tmp_path, weights_seed=2, kimg=2.0)
    evaluate(tmp_path, seed2)   # the new generator's metrics.json; its FID and band are set by hand below

    # Better than the re-scored FID by less than the noise: not replaced, although the recorded FID
    # (set to a huge number here) would have lost against it.
    set_recorded_fid(target, 1e6)
    before = snapshot(str(target), tmp_path)
    half = (old_high - old_low) / 2
    new_fid = expected["fid"] - half / 2
    rewrite_metrics(tmp_path, fid=new_fid, fid_noise_low=new_fid - half, fid_noise_high=new_fid + half)
    within = publish_gallery(seed2, LOG, tmp_path)
    assert within.status == "skipped" and snapshot(str(target), tmp_path) == before
    record = json.loads((tmp_path / "results" / "publish.json").read_text())
    comparison = record["comparison"]
    assert comparison["previous_scored_as"] == "rescored" and comparison["differences"] == ["seed 2 vs 1"]
    assert comparison["previous_fid_recorded"] == 1e6
    assert comparison["previous_fid_rescored"] == comparison["previous_fid_compared"] == expected["fid"]
    assert (comparison["previous_fid_noise_low"], comparison["previous_fid_noise_high"]) == (old_low, old_high)
    assert comparison["previous_generator_sha256"] == json.loads(before["manifest.json"])["generator"]["sha256"]
    assert comparison["settings"]["seed"] == 2 and comparison["previous_settings"]["seed"] == 1
    assert "re-scored under this run's settings" in record["reason"]

    # Better by more than the noise: replaced, although the recorded FID (now 0) would have won.
    set_recorded_fid(target, 0.0)
    low = old_low / 2
    rewrite_metrics(tmp_path, fid=low, fid_noise_low=low * 0.9, fid_noise_high=low * 1.1)
    beyond = publish_gallery(seed2, LOG, tmp_path)
    assert beyond.status == "published" and beyond.previous_release == first.release
    assert beyond.comparison["previous_fid_rescored"] == expected["fid"]
    assert beyond.comparison["rule"] == "noise_bands_apart"


def test_metrics_not_measured_under_the_current_params_refuse_a_rescored_gate(tmp_path):
    from ganlib.publish.stage import publish_gallery

    target = tmp_path / "gallery"
    train_stand_in(tmp_path, weights_seed=1, kimg=1.0)
    evaluate(tmp_path, rescore_params(target, "evaluate.seed=1"))
    publish_gallery(rescore_params(target, "evaluate.seed=1"), LOG, tmp_path)
    before = snapshot(str(target), tmp_path)
    evaluate(tmp_path, rescore_params(target, "evaluate.seed=2"))   # metrics.json at seed 2 ...
    with pytest.raises(PublishError, match=r"not measured under the current evaluate settings.*seed 2 vs 3"):
        publish_gallery(rescore_params(target, "evaluate.seed=3"), LOG, tmp_path)   # ... params now at seed 3
    assert snapshot(str(target), tmp_path) == before


def test_a_stored_generator_that_does_not_match_its_sha256_is_refused(tmp_path):
    from ganlib.publish.stage import publish_gallery

    target = tmp_path / "gallery"
    train_stand_in(tmp_path, weights_seed=1, kimg=1.0)
    evaluate(tmp_path, rescore_params(target, "evaluate.seed=1"))
    first = publish_gallery(rescore_params(target, "evaluate.seed=1"), LOG, tmp_path)
    (target / "releases" / first.release / "generator.pt").write_bytes(b"not the generator")
    evaluate(tmp_path, rescore_params(target, "evaluate.seed=2"))
    with pytest.raises(PublishError, match="does not match the sha256"):
        publish_gallery(rescore_params(target, "evaluate.seed=2"), LOG, tmp_path)


# ----------------------------------------------------------------------------- failures


# Generator calls with SMALL params: grid 1-2, samples 3-5, interpolation 6-8. Failing on call 4
# comes after the grid and two samples were written; on call 7, after every sample.
@pytest.mark.parametrize("fail_on_call", [4, 7])
def test_failure_mid_publish_leaves_the_previous_gallery_intact(tmp_path, target, fail_on_call):
    write_metrics(tmp_path, fid=30.0)
    publish(tmp_path, target)
    before = snapshot(target, tmp_path)

    write_metrics(tmp_path, fid=10.0)
    crashing = FailingGenerator(fail_on_call)
    with pytest.raises(RuntimeError, match="simulated crash"):
        publish(tmp_path, target, gate="better_fid", generator=crashing)
    assert crashing.calls == fail_on_call
    assert snapshot(target, tmp_path) == before
    if "://" not in target:
        assert sorted(p.name for p in Path(target).parent.iterdir()) == ["gallery"]   # no staging left over


class FlakyMemoryFileSystem(MemoryFileSystem):
    """The real in-memory filesystem, except that writing a path containing `fail_on` fails like a dropped upload."""

    protocol = "flakymemory"
    fail_on: str | None = None

    def pipe_file(self, path, value, *args, **kwargs):
        if self.fail_on and self.fail_on in path:
            raise OSError(f"simulated upload failure: {path}")
        return super().pipe_file(path, value, *args, **kwargs)


@pytest.fixture
def flaky_target(monkeypatch) -> str:
    fsspec.register_implementation("flakymemory", FlakyMemoryFileSystem, clobber=True)
    monkeypatch.setattr(FlakyMemoryFileSystem, "fail_on", None)
    return f"flakymemory://gallery-{uuid.uuid4().hex}"


def test_upload_failure_before_the_pointer_changes_nothing(tmp_path, flaky_target, monkeypatch):
    publish(tmp_path, flaky_target)
    before = snapshot(flaky_target, tmp_path)
    monkeypatch.setattr(FlakyMemoryFileSystem, "fail_on", "interpolation")
    with pytest.raises(OSError, match="simulated upload failure"):
        publish(tmp_path, flaky_target, generator=TinyGenerator(seed=1))
    assert snapshot(flaky_target, tmp_path) == before   # the partial release was removed too


def test_failed_pointer_write_keeps_the_old_pointer_and_the_orphan_is_pruned_later(tmp_path, flaky_target, monkeypatch):
    first = publish(tmp_path, flaky_target)
    before = snapshot(flaky_target, tmp_path)
    monkeypatch.setattr(FlakyMemoryFileSystem, "fail_on", "/.index.html.")   # the temporary object of the pointer
    with pytest.raises(OSError, match="simulated upload failure"):
        publish(tmp_path, flaky_target, generator=TinyGenerator(seed=1), now=T0 + timedelta(minutes=1))
    after = snapshot(flaky_target, tmp_path)
    assert {name: after[name] for name in before} == before   # old pointer and old release as they were
    assert len({name.split("/")[1] for name in after if name.startswith("releases/")}) == 2

    monkeypatch.setattr(FlakyMemoryFileSystem, "fail_on", None)
    last = publish(tmp_path, flaky_target, now=T0 + timedelta(minutes=2), overrides=("publish.keep_releases=2",))
    releases = {name.split("/")[1] for name in snapshot(flaky_target, tmp_path) if name.startswith("releases/")}
    assert releases == {first.release, last.release}


def test_broken_generator_publishes_nothing(tmp_path, target):
    publish(tmp_path, target)
    before = snapshot(target, tmp_path)
    with pytest.raises(GeneratorOutputError, match="NaN"):
        publish(tmp_path, target, generator=NaNGenerator())
    with pytest.raises(GeneratorOutputError, match="shape"):
        publish(tmp_path, target, info=Info(resolution=16))
    assert snapshot(target, tmp_path) == before


def test_a_foreign_directory_is_never_replaced(tmp_path):
    target = tmp_path / "not-a-gallery"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(PublishTargetError, match="not a scenegan gallery"):
        publish(tmp_path, str(target))
    assert [p.name for p in target.iterdir()] == ["thesis.tex"]


def test_a_symlinked_web_root_stays_a_symlink(tmp_path):
    real = tmp_path / "www" / "real"
    real.mkdir(parents=True)
    link = tmp_path / "gallery-link"
    link.symlink_to(real, target_is_directory=True)
    publish(tmp_path, str(link))
    publish(tmp_path, str(link))
    assert link.is_symlink() and (real / "index.html").is_file()
    assert sorted(p.name for p in real.parent.iterdir()) == ["real"]


def test_missing_fsspec_backend_is_a_clear_error(tmp_path):
    with pytest.raises(PublishTargetError, match=r"publish\.target"):
        publish(tmp_path, "nosuchscheme://bucket/gallery")


# ----------------------------------------------------------------------------- layout, history, determinism


def test_old_releases_are_kept_up_to_keep_releases(tmp_path, target):
    reports = [
        publish(tmp_path, target, generator=TinyGenerator(seed=i), now=T0 + timedelta(minutes=i),
                overrides=("publish.keep_releases=2",))
        for i in range(3)
    ]
    files = snapshot(target, tmp_path)
    releases = {name.split("/")[1] for name in files if name.startswith("releases/")}
    assert releases == {reports[1].release, reports[2].release}
    manifest = json.loads(files["manifest.json"])
    assert [entry["release"] for entry in manifest["history"]] == [reports[1].release]
    assert f'href="releases/{reports[1].release}/index.html"' in files["index.html"].decode()


def test_same_generator_and_params_give_identical_images_on_every_kind_of_target(tmp_path):
    targets = [str(tmp_path / "local"), f"file://{tmp_path / 'via-fsspec'}", memory_url()]
    images = []
    for i, target in enumerate(targets):
        publish(tmp_path, target, now=T0 + timedelta(seconds=i))
        files = release_relative(snapshot(target, tmp_path))
        images.append({name: data for name, data in files.items() if not name.endswith((".html", ".json"))})
        assert set(snapshot(target, tmp_path)) - {n for n in snapshot(target, tmp_path) if n.startswith("releases/")} \
            == {"index.html", "manifest.json"}
    assert images[0] == images[1] == images[2]
    assert len(images[0]) == 7

    other_seed = str(tmp_path / "other-seed")
    publish(tmp_path, other_seed, overrides=("publish.seed=7",))
    assert release_relative(snapshot(other_seed, tmp_path))["grid.png"] != images[0]["grid.png"]


def test_changing_the_sample_count_keeps_the_grid_and_the_earlier_samples(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    publish(tmp_path, a)
    publish(tmp_path, b, overrides=("publish.n_samples=9",))
    five, nine = release_relative(snapshot(a, tmp_path)), release_relative(snapshot(b, tmp_path))
    assert five["grid.png"] == nine["grid.png"]
    assert all(five[f"samples/sample_{i:04d}.png"] == nine[f"samples/sample_{i:04d}.png"] for i in range(5))


# ----------------------------------------------------------------------------- the stage


def test_stage_publishes_the_trained_generator_file_and_records_it(tmp_path):
    from ganlib.models.registry import rebuild_generator
    from ganlib.models.generator_file import GeneratorInfo, save_generator
    from ganlib.publish.stage import publish_gallery

    build = {"z_dim": 16, "width": 4, "resolution": 32}
    info = GeneratorInfo(arch="dcgan", z_dim=16, resolution=32, kimg=1.5, data_md5="d" * 32,
                         dataset_sha256="e" * 64, params_fingerprint="0123456789abcdef")
    params = load_test_params([*SMALL, f"publish.target={tmp_path / 'gallery'}"])
    with pytest.raises(UserFacingError, match=r"generator\.pt.*train"):
        publish_gallery(params, LOG, tmp_path)

    save_generator(tmp_path / params.base.paths.train / "generator.pt", rebuild_generator("dcgan", build), info, build)
    report = publish_gallery(params, LOG, tmp_path)
    record = json.loads((tmp_path / params.base.paths.publish_record).read_text())
    assert record == report.as_record() and record["status"] == "published" and record["checkpoint_kimg"] == 1.5
    files = snapshot(str(tmp_path / "gallery"), tmp_path)
    grid = np.asarray(Image.open(io.BytesIO(files[f"releases/{report.release}/grid.png"])))
    assert grid.shape == (2 * 34 + 2, 2 * 34 + 2, 3) and grid.std() > 0
    assert "d" * 32 in files["index.html"].decode()


# ----------------------------------------------------------------------------- latents


def test_interpolation_rows_run_between_fixed_latents():
    z = interpolation_latents(seed=3, rows=2, steps=5, z_dim=16)
    ends = fixed_latents(4, 16, seed=3)
    assert z.shape == (10, 16)
    assert torch.allclose(z[0], ends[0], atol=1e-5) and torch.allclose(z[4], ends[2], atol=1e-5)
    assert torch.allclose(z[5], ends[1], atol=1e-5) and torch.allclose(z[9], ends[3], atol=1e-5)
    assert torch.equal(z, interpolation_latents(seed=3, rows=2, steps=5, z_dim=16))


# ----------------------------------------------------------------------------- the Prefect flow


def test_publish_flow_shows_the_gate_numbers_as_an_artifact(tmp_path, prefect_api_url):
    import asyncio
    import shutil

    from conftest import REPO_ROOT
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.publish import publish_flow

    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    target = tmp_path / "gallery"
    first = [*RESCORE, f"publish.target={target}", "evaluate.seed=1"]
    second = [*RESCORE, f"publish.target={target}", "evaluate.seed=2"]
    train_stand_in(tmp_path, weights_seed=1, kimg=1.0)
    evaluate(tmp_path, load_test_params(first))
    assert publish_flow(params_file=str(tmp_path / "params.yaml"), overrides=first)["status"] == "published"
    train_stand_in(tmp_path, weights_seed=2, kimg=2.0)
    evaluate(tmp_path, load_test_params(second))
    record = publish_flow(params_file=str(tmp_path / "params.yaml"), overrides=second)
    assert record["comparison"]["previous_scored_as"] == "rescored"

    async def latest(key: str) -> str:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50)
            return max(found, key=lambda a: a.created).data

    markdown = asyncio.run(latest("publish-gate"))
    rescored = record["comparison"]["previous_fid_rescored"]
    assert f"| published, re-scored | {rescored:.6g} |" in markdown
    assert "| seed | 2 | 1 |" in markdown and record["comparison"]["rule_text"] in markdown


class TinyConditionalGenerator(TinyGenerator):
    """TinyGenerator whose colour depends on the class: class c adds c to every pixel before tanh."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = torch.arange(len(z)) % 3 if labels is None else labels
        pre = self.linear(z).view(-1, 3, self.resolution, self.resolution) + labels.float().view(-1, 1, 1, 1)
        return torch.tanh(pre)


def test_a_conditional_generator_gets_a_row_per_class_with_its_scores(tmp_path):
    per_class = {
        "dawn": {"fid": 12.3, "fid_low": 11.9, "fid_high": 12.8, "kid": 0.0123, "kid_std": 0.002, "n_samples": 50,
                 "n_real": 414},
        "day": {"fid": 8.25, "fid_low": 8.0, "fid_high": 8.5, "kid": 0.01, "kid_std": 0.001, "n_samples": 50,
                "n_real": 899},
        "night": {"n_real": 30, "n_samples": 0},
    }
    write_metrics(tmp_path, fid=20.0, per_class=per_class)
    from test_metrics_support import smooth_images, write_prepared_dataset
    from train_support import write_labels

    labels = np.array([0] * 10 + [1] * 30 + [2] * 20)  # the samples are drawn in these proportions
    prepared = write_prepared_dataset(tmp_path / "data" / "prepared", smooth_images(60, seed=0, resolution=8),
                                      data_md5=None)
    write_labels(prepared, labels, ["dawn", "day", "night"])
    target = str(tmp_path / "gallery")
    publish(tmp_path, target, generator=TinyConditionalGenerator(), info=Info(classes=("dawn", "day", "night")))
    files = release_relative(snapshot(target, tmp_path))
    rows = {name: np.asarray(Image.open(io.BytesIO(files[f"classes/{name}.png"]))) for name in ("dawn", "day", "night")}
    assert all(row.shape == (8 + 4, 2 * (8 + 2) + 2, 3) for row in rows.values())  # one row of grid_size samples
    assert rows["dawn"].mean() < rows["day"].mean() < rows["night"].mean()  # each row drawn as its own class
    html = files["index.html"].decode()
    section = html[html.index('<section id="classes">'):]
    assert [h for h in re.findall(r"<h3>(\w+)</h3>", section)] == ["dawn", "day", "night"]
    assert "FID 12.30 (11.90 to 12.80), KID 0.0123 ± 0.0020; 50 samples of this class against its 414 real images" in section
    assert "too few real images (30) for a per-class FID" in section
    assert "A class per row" in html
    # The individual samples are drawn as the classes evaluation drew sample i as, and say which.
    from ganlib.metrics.sample_labels import sample_labelling
    from ganlib.data.dataset import open_prepared

    params = load_test_params()
    labelling = sample_labelling(("dawn", "day", "night"), open_prepared(prepared), params.publish.seed)
    drawn = labelling(params.evaluate.n_samples)[:5]  # SMALL: 5 samples
    captions = re.findall(r'alt="sample (\d) · (\w+)"', html)
    assert [name for _, name in captions] == [("dawn", "day", "night")[i] for i in drawn.tolist()]
