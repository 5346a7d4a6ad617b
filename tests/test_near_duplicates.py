"""Perceptual near-duplicates: re-encoded and resized copies are found, distinct scenes are not."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlib.config import NEAR_DUPLICATE_MAX_DISTANCE, ParamsError, load_params
from ganlib.data import near_duplicates
from ganlib.data.dataset import QA_REPORT_FILE, open_prepared
from ganlib.data.near_duplicates import (
    NearDuplicateGroups,
    NearDuplicateIndex,
    count_near_duplicates_between,
    dataset_hashes,
    hamming_distance,
    perceptual_hash,
)
from ganlib.data.preprocess import NEAR_DUPLICATE, prepare_dataset
from ganlib.data.scenes import render_scene

REPO = Path(__file__).resolve().parents[1]


def jpeg_reencoded(image: Image.Image, quality: int = 70) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture
def raw_with_copies(tmp_path: Path) -> Path:
    """Four distinct scenes, a JPEG re-encode of scene 0 and a 90% resize of scene 1."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    scenes = [render_scene(7, i, 128) for i in range(4)]
    for i, scene in enumerate(scenes):
        scene.save(raw / f"scene-{i}.png")
    jpeg_reencoded(scenes[0]).save(raw / "zz-scene-0-reencoded.jpg", quality=95)
    scenes[1].resize((115, 115), Image.Resampling.BICUBIC).save(raw / "zz-scene-1-resized.png")
    return tmp_path


def prepare(root: Path, action: str):
    params = load_params(REPO / "params.yaml", ["preprocess.resolution=64", "preprocess.min_side=64",
                                                "preprocess.workers=1", f"preprocess.near_duplicates={action}"])
    summary = prepare_dataset(params, logging.getLogger("test"), root)
    report = json.loads((root / "data" / "prepared" / QA_REPORT_FILE).read_text())
    return summary, report


def test_reencoded_and_resized_copies_are_reported_in_groups_and_kept(raw_with_copies):
    summary, report = prepare(raw_with_copies, "report")
    near = report["near_duplicates"]
    groups = {group["kept"]: [copy["path"] for copy in group["copies"]] for group in near["listing"]}
    assert groups == {"scene-0.png": ["zz-scene-0-reencoded.jpg"], "scene-1.png": ["zz-scene-1-resized.png"]}
    assert all(copy["distance"] <= near["max_distance"] for group in near["listing"] for copy in group["copies"])
    assert (near["groups"], near["copies"], near["action"]) == (2, 2, "report")
    assert summary.count == 6 and summary.rejected == 0  # reported, not removed
    assert (summary.near_duplicate_groups, summary.near_duplicate_copies) == (2, 2)


def test_drop_leaves_the_copies_out_naming_what_they_look_like(raw_with_copies):
    summary, report = prepare(raw_with_copies, "drop")
    assert summary.count == 4 and summary.rejects_by_reason == {NEAR_DUPLICATE: 2}
    details = {r["path"]: r["detail"] for r in report["rejects"] if r["reason"] == NEAR_DUPLICATE}
    assert set(details) == {"zz-scene-0-reencoded.jpg", "zz-scene-1-resized.png"}
    assert "looks like data/raw/scene-0.png (kept" in details["zz-scene-0-reencoded.jpg"]
    kept = open_prepared(raw_with_copies / "data" / "prepared").images
    assert kept.shape[0] == 4


def test_distinct_scenes_are_not_near_duplicates():
    hashes = [perceptual_hash(np.asarray(render_scene(0, i, 64))) for i in range(300)]
    index = NearDuplicateIndex(max_distance=load_params(REPO / "params.yaml").preprocess.near_duplicate_distance)
    matches = []
    for i, value in enumerate(hashes):
        if (match := index.closest(value)) is not None:
            matches.append((i, match))
        index.add(value, str(i))
    assert matches == []


@pytest.mark.parametrize("max_distance", [0, 3, 8])
def test_the_banded_search_finds_exactly_what_a_full_comparison_finds(max_distance):
    rng = np.random.default_rng(max_distance)
    base = [int(v) for v in rng.integers(0, 2**63, 200, dtype=np.int64)]
    # Plant near copies: flip 0..max_distance+2 random bits of some hashes.
    planted = []
    for value in base[:60]:
        flips = rng.choice(64, size=int(rng.integers(0, max_distance + 3)), replace=False)
        planted.append(value ^ sum(1 << int(bit) for bit in flips))
    index = NearDuplicateIndex(max_distance)
    for i, value in enumerate(base):
        index.add(value, str(i))
    for value in planted + [int(v) for v in rng.integers(0, 2**63, 100, dtype=np.int64)]:
        distances = [hamming_distance(value, other) for other in base]
        best = min(range(len(base)), key=lambda i: (distances[i], i))
        expected = (str(best), distances[best]) if distances[best] <= max_distance else None
        assert index.closest(value) == expected


def test_counting_images_of_one_version_already_in_another():
    images_a = np.stack([np.asarray(render_scene(1, i, 64)) for i in range(6)])
    copies = np.stack([np.asarray(jpeg_reencoded(Image.fromarray(images_a[i]), 80)) for i in (0, 4)])
    images_b = np.concatenate([copies, np.stack([np.asarray(render_scene(2, i, 64)) for i in range(3)])])
    assert count_near_duplicates_between(dataset_hashes(images_a), dataset_hashes(images_b), 4) == 2
    assert count_near_duplicates_between(dataset_hashes(images_a), dataset_hashes(images_a), 0) == 6


def test_a_distance_above_the_searchable_cap_is_refused_naming_the_key():
    assert load_params(REPO / "params.yaml", [f"preprocess.near_duplicate_distance={NEAR_DUPLICATE_MAX_DISTANCE}"])
    with pytest.raises(ParamsError, match=rf"preprocess\.near_duplicate_distance: at most {NEAR_DUPLICATE_MAX_DISTANCE} bits"):
        load_params(REPO / "params.yaml", [f"preprocess.near_duplicate_distance={NEAR_DUPLICATE_MAX_DISTANCE + 1}"])


def comparisons_for(max_distance: int, hashes: list[int], monkeypatch) -> int:
    """How many hash pairs the banded search compares while grouping `hashes`."""
    calls = 0
    real = near_duplicates.hamming_distance

    def counting(a: int, b: int) -> int:
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(near_duplicates, "hamming_distance", counting)
    groups = NearDuplicateGroups(max_distance)
    for i, value in enumerate(hashes):
        groups.check(str(i), value)
    monkeypatch.undo()
    return calls


def test_at_the_cap_the_search_skips_most_pairs_and_far_above_it_compares_them_all(monkeypatch):
    rng = np.random.default_rng(0)
    hashes = [int(v) for v in rng.integers(0, 2**63, 3000, dtype=np.int64) * 2 + rng.integers(0, 2, 3000)]
    pairs = len(hashes) * (len(hashes) - 1) // 2
    # About (d + 1) * 2^(-64 / (d + 1)) of the pairs: 3% at d = 7 (the module docstring has the reasoning).
    assert comparisons_for(NEAR_DUPLICATE_MAX_DISTANCE, hashes, monkeypatch) < 0.05 * pairs
    assert comparisons_for(15, hashes, monkeypatch) > 0.6 * pairs  # 4-bit bands: quadratic
