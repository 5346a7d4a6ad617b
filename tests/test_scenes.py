"""The procedural default dataset: deterministic, varied, landscape-shaped, written atomically."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlib.data import scenes
from ganlib.data.scenes import (
    DefaultDatasetError,
    render_scene,
    scene_attributes,
    scene_png_bytes,
    write_default_dataset,
)
from ganlib.errors import UserFacingError

SIZE = 32          # small renders keep the whole file well under its time budget
LOG = logging.getLogger("test_scenes")


def files(out: Path) -> dict[str, bytes]:
    """Every file under `out`: relative POSIX path -> bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def scene_path(seed: int, index: int) -> str:
    """Where write_default_dataset puts scene `index`: in the folder of its time of day (its class)."""
    return f"{scene_attributes(seed, index).time_of_day}/scene-{index:06d}.png"


def pixels(seed: int, index: int, size: int = SIZE) -> np.ndarray:
    image = render_scene(seed, index, size)
    assert image.mode == "RGB" and image.size == (size, size)
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """48 scenes of one dataset, [N, H, W, 3] in 0..1."""
    return np.stack([pixels(3, index) for index in range(48)])


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_pixels_and_png_bytes():
    for index in (0, 1, 17):
        first, second = render_scene(11, index, SIZE), render_scene(11, index, SIZE)
        assert np.array_equal(np.asarray(first), np.asarray(second))
        assert scene_png_bytes(first) == scene_png_bytes(second)


def test_png_bytes_round_trip_and_carry_no_metadata():
    image = render_scene(0, 0, SIZE)
    data = scene_png_bytes(image)
    decoded = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(image))
    assert b"tIME" not in data and b"tEXt" not in data and b"iTXt" not in data


def test_png_bytes_do_not_depend_on_the_process():
    """Another interpreter (other hash seed, fresh caches) writes the same bytes: DVC's md5 is stable."""
    code = (
        "import hashlib; from ganlib.data.scenes import render_scene, scene_png_bytes; "
        "print(hashlib.md5(b''.join(scene_png_bytes(render_scene(8, i, 32)) for i in range(3))).hexdigest())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    here = hashlib.md5(b"".join(scene_png_bytes(render_scene(8, i, 32)) for i in range(3))).hexdigest()
    assert child.stdout.strip() == here


def test_different_seeds_and_indices_give_different_images():
    base = pixels(1, 0)
    assert np.abs(base - pixels(2, 0)).mean() > 0.02
    assert np.abs(base - pixels(1, 1)).mean() > 0.02


def test_an_image_depends_only_on_seed_index_and_size(tmp_path):
    """Image 5 of a 10-image run equals image 5 rendered alone, so runs can be split or parallel."""
    out = tmp_path / "raw"
    write_default_dataset(out, n_images=10, size=SIZE, seed=4, log=LOG)
    written = (out / scene_path(4, 5)).read_bytes()
    assert written == scene_png_bytes(render_scene(4, 5, SIZE))


def test_a_scene_is_the_same_scene_at_every_size():
    """Only the grain depends on the size: a 128 px render, shrunk, matches the 32 px one."""
    for index in range(4):
        small = pixels(5, index, 32)
        large = np.asarray(render_scene(5, index, 128).resize((32, 32), Image.Resampling.LANCZOS)) / 255.0
        other_scene = pixels(5, index + 4, 32)
        same = np.abs(small - large).mean()
        assert same < 0.03, f"scene {index}: 32 px and 128 px renders differ by {same:.3f}"
        assert same < 0.5 * np.abs(small - other_scene).mean()


# --------------------------------------------------------------------------- what the images look like


def test_images_are_not_flat_and_use_a_plausible_range(batch):
    per_image_std = batch.std(axis=(1, 2, 3))
    assert per_image_std.min() > 0.02, "an image is nearly a flat colour"
    means = batch.mean(axis=(1, 2, 3))
    assert 0.03 < means.min() and means.max() < 0.92, "an image is nearly black or white"
    # Not saturated to pure 0/255 in bulk: clipping would mean broken colours.
    assert ((batch <= 0.0) | (batch >= 1.0)).mean() < 0.02


def test_a_batch_is_diverse(batch):
    flat = batch.reshape(len(batch), -1)
    distances = [np.abs(a - b).mean() for a, b in itertools.combinations(flat, 2)]
    assert min(distances) > 0.01, "two scenes are nearly identical"
    assert np.mean(distances) > 0.1
    # Colour variety, not one palette: the batch's mean colours spread out.
    assert batch.mean(axis=(1, 2)).std(axis=0).min() > 0.05


def test_daytime_sky_is_above_darker_land_or_water():
    tops, bottoms = [], []
    for index in range(120):
        scene = scene_attributes(2, index)
        if scene.time_of_day != "day" or scene.weather != "clear":
            continue
        image = pixels(2, index)
        top, bottom = image[: SIZE // 4].reshape(-1, 3).mean(0), image[-SIZE // 4 :].reshape(-1, 3).mean(0)
        # Sky is bluer than whatever is at the bottom (grass, water, snow)...
        assert top[2] / top.sum() > bottom[2] / bottom.sum(), f"scene {index}: {scene}"
        tops.append(top.mean())
        bottoms.append(bottom.mean())
    assert len(tops) >= 10
    # ...and on average brighter.
    assert np.mean(tops) > np.mean(bottoms) + 0.05


def test_night_is_darker_than_day():
    brightness = {"day": [], "night": []}
    for index in range(80):
        scene = scene_attributes(6, index)
        if scene.time_of_day in brightness:
            brightness[scene.time_of_day].append(pixels(6, index).mean())
    assert len(brightness["night"]) >= 4
    assert max(brightness["night"]) < np.mean(brightness["day"])


def test_attributes_cover_every_time_season_weather_and_water():
    sampled = [scene_attributes(0, index) for index in range(400)]
    assert {s.time_of_day for s in sampled} == set(scenes.TIMES_OF_DAY)
    assert {s.season for s in sampled} == set(scenes.SEASONS)
    assert {s.weather for s in sampled} == set(scenes.WEATHERS)
    assert {s.water for s in sampled} == set(scenes.WATERS)
    assert {s.forest for s in sampled} == set(scenes.FORESTS)
    assert all(s.elements[0] == "sky" for s in sampled)
    assert scene_attributes(0, 7) == scene_attributes(0, 7)


def test_renders_at_common_sizes():
    for size in (16, 64, 128, 256):
        assert render_scene(0, 3, size).size == (size, size)
    with pytest.raises(ValueError, match="size"):
        render_scene(0, 3, 8)


# --------------------------------------------------------------------------- writing the dataset


def test_writes_numbered_pngs_and_reports(tmp_path, caplog):
    out = tmp_path / "data" / "raw"
    with caplog.at_level(logging.INFO, logger=LOG.name):
        summary = write_default_dataset(out, n_images=5, size=SIZE, seed=0, log=LOG)
    assert sorted(files(out)) == sorted(scene_path(0, i) for i in range(5))
    assert summary.n_images == 5 and summary.out_dir == out and summary.images_per_second > 0
    times = [scene_attributes(0, i).time_of_day for i in range(5)]
    assert summary.class_counts == {name: times.count(name) for name in scenes.TIMES_OF_DAY if name in times}
    assert any("images/s" in record.getMessage() for record in caplog.records)
    assert [p.name for p in out.parent.iterdir()] == ["raw"], "staging left behind"


def test_rerun_gives_the_same_bytes_and_replaces_its_own_output(tmp_path):
    out = tmp_path / "raw"
    write_default_dataset(out, n_images=4, size=SIZE, seed=9, log=LOG)
    first = files(out)
    write_default_dataset(out, n_images=3, size=SIZE, seed=9, log=LOG)   # no overwrite needed: only scenes there
    second = files(out)
    assert sorted(second) == sorted(scene_path(9, i) for i in range(3)) and set(second) < set(first)
    assert all(second[name] == first[name] for name in second)


def test_refuses_to_overwrite_a_directory_it_did_not_write(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    photo = out / "holiday.jpg"
    photo.write_bytes(b"someone's photo")
    (out / "scene-000000.png").write_bytes(b"not ours either, but looks like it")
    with pytest.raises(DefaultDatasetError) as err:
        write_default_dataset(out, n_images=3, size=SIZE, seed=0, log=LOG)
    message = str(err.value)
    assert isinstance(err.value, UserFacingError)
    assert str(out) in message and "holiday.jpg" in message and "overwrite" in message
    assert photo.read_bytes() == b"someone's photo"
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg", "scene-000000.png"]

    write_default_dataset(out, n_images=3, size=SIZE, seed=0, log=LOG, overwrite=True)
    assert sorted(files(out)) == sorted(scene_path(0, i) for i in range(3))


def test_replaces_its_own_class_folders_and_its_older_flat_layout(tmp_path):
    out = tmp_path / "raw"
    write_default_dataset(out, n_images=6, size=SIZE, seed=0, log=LOG)
    (out / "scene-000099.png").write_bytes(b"as it wrote them before the classes")
    write_default_dataset(out, n_images=2, size=SIZE, seed=0, log=LOG)
    assert sorted(files(out)) == sorted(scene_path(0, i) for i in range(2))


@pytest.mark.parametrize("foreign", ["day/holiday.jpg", "forest/scene-000001.png", "day/sub/scene-000001.png"])
def test_refuses_class_folders_holding_what_it_did_not_write(tmp_path, foreign):
    out = tmp_path / "raw"
    write_default_dataset(out, n_images=2, size=SIZE, seed=0, log=LOG)
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_bytes(b"someone's photo")
    before = files(out)
    with pytest.raises(DefaultDatasetError, match=foreign.split("/")[0]):
        write_default_dataset(out, n_images=2, size=SIZE, seed=0, log=LOG)
    assert files(out) == before


def test_the_committed_default_dataset_has_four_usable_classes():
    """params.yaml's data section: every time of day well above the small-class warning, no strong imbalance
    (seed 0, 2000 scenes: dawn 414, day 899, dusk 369, night 318)."""
    from ganlib.config import load_params
    from ganlib.data import labels

    data = load_params(Path(__file__).resolve().parents[1] / "params.yaml").data
    times = [scene_attributes(data.seed, index).time_of_day for index in range(data.n_images)]
    counts = {name: times.count(name) for name in scenes.TIMES_OF_DAY}
    assert min(counts.values()) >= 4 * labels.MIN_CLASS_IMAGES
    assert labels.balance_warnings(counts, "data/raw") == []


def test_refuses_a_file_in_place_of_the_directory(tmp_path):
    out = tmp_path / "raw"
    out.write_text("a file")
    with pytest.raises(DefaultDatasetError, match="not a directory"):
        write_default_dataset(out, n_images=1, size=SIZE, seed=0, log=LOG, overwrite=True)
    assert out.read_text() == "a file"


def test_failure_midway_leaves_no_partial_output(tmp_path, monkeypatch):
    out = tmp_path / "raw"
    write_default_dataset(out, n_images=3, size=SIZE, seed=1, log=LOG)
    previous = files(out)

    real_encode, calls = scenes.scene_png_bytes, []

    def encode_then_fail(image):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full (simulated)")
        return real_encode(image)

    monkeypatch.setattr(scenes, "scene_png_bytes", encode_then_fail)
    with pytest.raises(OSError, match="simulated"):
        write_default_dataset(out, n_images=8, size=SIZE, seed=2, log=LOG)
    assert files(out) == previous, "previous dataset was damaged"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"], "staging left behind"

    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        write_default_dataset(fresh, n_images=8, size=SIZE, seed=2, log=LOG)
    assert not fresh.exists()


def test_rejects_bad_counts_and_sizes(tmp_path):
    with pytest.raises(ValueError, match="n_images"):
        write_default_dataset(tmp_path / "a", n_images=0, size=SIZE, seed=0, log=LOG)
    with pytest.raises(ValueError, match="size"):
        write_default_dataset(tmp_path / "b", n_images=1, size=4, seed=0, log=LOG)
    with pytest.raises(ValueError, match="seed"):
        write_default_dataset(tmp_path / "c", n_images=1, size=SIZE, seed=-1, log=LOG)
    assert not any(tmp_path.iterdir())
