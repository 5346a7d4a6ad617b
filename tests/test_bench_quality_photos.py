"""bench/quality.py: the photos set from any folder (small photos used whole), and the PyTorch example's plumbing."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

BENCH = Path(__file__).resolve().parents[1] / "bench"
LOG = logging.getLogger("test_bench_quality_photos")


@pytest.fixture(scope="module")
def quality() -> Iterator[ModuleType]:
    # bench/ is a folder of scripts: quality.py imports baseline_dcgan as a sibling module.
    # Both are registered only while quality.py is executed (dataclasses look their module up).
    spec = importlib.util.spec_from_file_location("quality", BENCH / "quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sibling_loaded = "baseline_dcgan" in sys.modules
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        patch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        if not sibling_loaded:
            del sys.modules["baseline_dcgan"]
    yield module


def noise_photo(width: int, height: int, seed: int) -> Image.Image:
    # Smooth-ish content (a gradient plus noise) so that JPEG and resizing have something to keep.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-30, 30, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def centre_square_resized(path: Path, resolution: int) -> np.ndarray:
    """What a small photo should become, computed here from the photo file."""
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    side = min(upright.size)
    left, top = (upright.width - side) // 2, (upright.height - side) // 2
    square = upright.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((resolution, resolution), Image.Resampling.LANCZOS))


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "trip" / "day2").mkdir(parents=True)
    noise_photo(40, 30, 1).save(folder / "a-small.png")  # below the crop size: upscaled whole
    noise_photo(300, 200, 2).save(folder / "trip" / "day2" / "b-small.jpg", quality=90)  # 200 < 4 x 64
    noise_photo(600, 400, 3).save(folder / "c-big.png")
    noise_photo(400, 300, 4).save(folder / "trip" / "d-big.jpeg", quality=90)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "trip" / "broken.jpg").write_bytes(b"not a JPEG either")
    noise_photo(50, 50, 5).save(folder / ".thumbnail.png")  # hidden: skipped
    return folder


def test_mixed_folder_small_photos_whole_big_ones_cropped(
    quality: ModuleType, mixed_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "crops"
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        made = quality.write_photo_crops(mixed_folder, out, count=10, seed=0, log=LOG)

    assert (made.whole, made.cropped, made.crops, made.written, made.skipped) == (2, 2, 8, 10, 3)
    written = sorted(p.name for p in out.iterdir())
    assert written == [*(f"crop-{i:05d}.png" for i in range(8)), "whole-00000.png", "whole-00001.png"]
    for name in written:
        with Image.open(out / name) as im:
            assert (im.size, im.mode) == ((64, 64), "RGB")
    # Small photos in path order: a-small.png, then trip/day2/b-small.jpg (a sub-folder's).
    assert np.array_equal(np.asarray(Image.open(out / "whole-00000.png")),
                          centre_square_resized(mixed_folder / "a-small.png", 64))
    assert np.array_equal(np.asarray(Image.open(out / "whole-00001.png")),
                          centre_square_resized(mixed_folder / "trip" / "day2" / "b-small.jpg", 64))
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 3 file(s)" in skipped and "notes.txt" in skipped and "broken.jpg" in skipped
    assert "2 photos used whole" in made.describe() and "2 cut into 8 random crops" in made.describe()


def test_crops_are_seeded_and_count_holds_for_big_photos(quality: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    noise_photo(640, 300, 1).save(folder / "wide.png")
    first = quality.write_photo_crops(folder, tmp_path / "one", count=5, seed=3, log=LOG)
    again = quality.write_photo_crops(folder, tmp_path / "two", count=5, seed=3, log=LOG)
    assert (first.written, first.whole, first.cropped) == (5, 0, 1)
    assert [p.read_bytes() for p in sorted((tmp_path / "one").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "two").iterdir())]
    # More small photos than --crops: each is still used (once), and each big photo gives a crop.
    noise_photo(60, 80, 2).save(folder / "small.png")
    mixed = quality.write_photo_crops(folder, tmp_path / "three", count=1, seed=3, log=LOG)
    assert (mixed.whole, mixed.crops, mixed.written) == (1, 1, 2)


def test_sideways_photo_is_used_upright(quality: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[quality.EXIF_ORIENTATION] = 6  # stored sideways: shown rotated by 90 degrees
    noise_photo(90, 40, 7).save(folder / "phone.jpg", exif=exif, quality=95)
    quality.write_photo_crops(folder, tmp_path / "out", count=3, seed=0, log=LOG)
    expected = centre_square_resized(folder / "phone.jpg", 64)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "whole-00000.png")), expected)


def test_folder_without_photos_is_a_clear_error(quality: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.md").write_text("# no photos here")
    (folder / "sub" / "fake.png").write_bytes(b"\x89PNG but truncated")
    with pytest.raises(SystemExit, match=rf"--photos {folder}: no usable photo .*2 files skipped"):
        quality.write_photo_crops(folder, tmp_path / "out", count=10, seed=0, log=LOG)
    with pytest.raises(SystemExit, match=rf"--photos {tmp_path / 'missing'}: not a folder"):
        quality.write_photo_crops(tmp_path / "missing", tmp_path / "out2", count=10, seed=0, log=LOG)


# ---------------------------------------------------------------------- the PyTorch example's plumbing

# The example's state_dict keys (its networks keep their layers in a Sequential named `main`):
# facts of its layout, which ours has to match to load its checkpoints.
EXAMPLE_G_KEYS = {f"main.{i}.weight" for i in (0, 3, 6, 9, 12)} | {
    f"main.{i}.{name}" for i in (1, 4, 7, 10)
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def test_example_checkpoints_load_into_our_generator(quality: ModuleType, tmp_path: Path) -> None:
    ours = quality.BaselineGenerator()
    theirs = quality.to_example_keys(ours.state_dict())
    assert set(theirs) == EXAMPLE_G_KEYS
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in theirs.items()}, tmp_path / "netG_epoch_3.pth")
    loaded = quality.BaselineGenerator()
    quality.load_example_state(loaded, tmp_path / "netG_epoch_3.pth")
    assert all(torch.equal(a + 1, b) for a, b in zip(ours.parameters(), loaded.parameters()))
    torch.save(quality.to_example_keys(quality.BaselineGenerator(width=32).state_dict()), tmp_path / "narrow.pth")
    with pytest.raises(SystemExit, match=r"narrow\.pth: not the layout .* other shapes"):
        quality.load_example_state(quality.BaselineGenerator(), tmp_path / "narrow.pth")


def test_clock_ends_the_epoch_between_iterations_and_counts_every_image(quality: ModuleType) -> None:
    clock = quality.ExampleClock(seconds=None, batches=5, record=None)
    loader_class = clock.loader_class(torch.utils.data.DataLoader)
    loader = loader_class(torch.utils.data.TensorDataset(torch.zeros(10, 1)), batch_size=4)  # 4 + 4 + 2
    epochs = []
    with pytest.raises(quality.BudgetSpent):
        for _ in range(100):
            epochs.append([len(batch[0]) for batch in loader])
    assert epochs == [[4, 4, 2], [4, 4]]  # the second epoch ended after the 5th batch
    assert (clock.images, clock.handed_out, clock.spent) == (18, 5, True)


EXAMPLE_SCRIPT = os.environ.get("SCENEGAN_DCGAN_EXAMPLE")


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLE_SCRIPT, reason="set SCENEGAN_DCGAN_EXAMPLE to pytorch/examples' dcgan/main.py")
def test_real_example_one_step_equals_ours_then_trains_to_a_budget(quality: ModuleType, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = quality.write_image_folder(rng.integers(0, 256, (70, 64, 64, 3), dtype=np.uint8), tmp_path / "data")
    check = quality.check_example_step(Path(EXAMPLE_SCRIPT), data, tmp_path / "check")
    assert check.equal, check.describe()
    generator, kimg, seconds = quality.train_example(Path(EXAMPLE_SCRIPT), data, tmp_path / "run", 3.0, seed=0)
    assert kimg * 1000 > 0 and seconds >= 3.0
    assert isinstance(generator, quality.BaselineGenerator)
