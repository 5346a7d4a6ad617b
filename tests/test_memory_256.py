"""256 px datasets stay memory-mapped: preprocessing streams into the file, and loading onto a GPU goes by chunks.

100k images at 256 px are a 20 GB images.npy: nothing may read it whole.
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganlib.config import load_params
from ganlib.data.dataset import open_prepared
from ganlib.data.preprocess import prepare_dataset
from ganlib.training.real_batches import copy_to_device

REPO = Path(__file__).resolve().parents[1]
COUNT = 160


def test_preprocessing_256_px_streams_into_a_memory_map(tmp_path):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        # Distinct 320x288 photos-to-be (noise in a gradient: no two are duplicates).
        gradient = np.linspace(0, 200, 320, dtype=np.float32)[None, :, None]
        pixels = np.clip(gradient + rng.normal(0, 20, (288, 320, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(raw / f"photo-{i:04d}.jpg", quality=90)
    params = load_params(REPO / "params.yaml", ["preprocess.resolution=256", "preprocess.min_side=256",
                                                 "preprocess.workers=1"])
    output_bytes = COUNT * 256 * 256 * 3  # 31 MB

    tracemalloc.start()
    try:
        summary = prepare_dataset(params, logging.getLogger("test"), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary.count == COUNT and summary.resolution == 256
    # In flight: one chunk of decoded images (at most 32, 6 MB) and the file being hashed, never the array.
    assert peak < output_bytes * 0.4, f"peak {peak / 1e6:.1f} MB of Python/numpy memory for {output_bytes / 1e6:.0f} MB of images"
    prepared = open_prepared(tmp_path / "data" / "prepared")
    assert isinstance(prepared.images, np.memmap) and prepared.images.shape == (COUNT, 256, 256, 3)


class ReadSpy:
    """An array stand-in that records the size of every read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.reads = array, []
        self.shape, self.dtype, self.nbytes = array.shape, array.dtype, array.nbytes

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):
        out = self.array[index]
        self.reads.append(len(out))
        return out


def test_the_dataset_goes_to_the_device_a_chunk_at_a_time():
    images = np.random.default_rng(1).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    spy = ReadSpy(images)
    store = copy_to_device(spy, torch.device("cpu"), chunk_images=4)
    assert torch.equal(store, torch.from_numpy(images))
    assert spy.reads == [4, 4, 2]
