"""Helpers shared by the tests/test_metrics*.py files (no tests here).

Small real inputs: prepared datasets written in the real format, a tiny real
generator module, and a socket tripwire that fails a test on any network
connection (evaluation must never try to download).
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import load_test_params

from ganlib.data.dataset import FORMAT, IMAGES_FILE, MANIFEST_FILE

RESOLUTION = 16
Z_DIM = 8


def write_prepared_dataset(root: Path, images: np.ndarray, data_md5: str | None = "0123456789abcdef") -> Path:
    """A prepared dataset directory in the real format (images.npy + manifest.json)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / IMAGES_FILE, images)
    manifest = {
        "format": FORMAT,
        "count": int(images.shape[0]),
        "resolution": int(images.shape[1]),
        "images_sha256": hashlib.sha256((root / IMAGES_FILE).read_bytes()).hexdigest(),
        "data_md5": data_md5,
    }
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))
    return root


def smooth_images(n: int, seed: int, resolution: int = RESOLUTION) -> np.ndarray:
    """Blurry colour fields: a stand-in for scenes with some structure, uint8 [n, R, R, 3]."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 256, size=(n, 4, 4, 3)).astype(np.float32)
    images = coarse.repeat(resolution // 4, axis=1).repeat(resolution // 4, axis=2)
    return np.clip(images + rng.normal(0, 6, images.shape), 0, 255).astype(np.uint8)


def add_noise(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.RandomState(seed).normal(0, sigma, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).astype(np.uint8)


class TinyGenerator(nn.Module):
    """A real (untrained) generator: z [B, Z] -> tanh images [B, 3, R, R] in [-1, 1]."""

    def __init__(self, z_dim: int = Z_DIM, resolution: int = RESOLUTION, seed: int = 0):
        super().__init__()
        self.resolution = resolution
        self.fc = nn.Linear(z_dim, 3 * 4 * 4)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=generator))
            self.fc.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coarse = torch.tanh(self.fc(z)).view(-1, 3, 4, 4)
        return nn.functional.interpolate(coarse, size=(self.resolution, self.resolution), mode="nearest")


@dataclass
class TinyInfo:
    z_dim: int = Z_DIM
    resolution: int = RESOLUTION
    kimg: float = 2.5
    data_md5: str | None = "0123456789abcdef"
    dataset_sha256: str | None = None


def project(tmp_path: Path, n_real: int = 48, seed: int = 0) -> Path:
    """A scratch project root holding a prepared dataset at params' base.paths.prepared."""
    params = load_test_params()
    write_prepared_dataset(tmp_path / params.base.paths.prepared, smooth_images(n_real, seed))
    return tmp_path


def tiny_params(*overrides: str):
    """The repository's params with evaluation shrunk to the tiny extractor on the CPU."""
    return load_test_params(
        (
            "evaluate.extractor=tiny-random-conv",
            "evaluate.device=cpu",
            "evaluate.n_samples=40",
            "evaluate.batch_size=16",
            "evaluate.kid_subset_size=16",
            "evaluate.kid_subsets=20",
            "evaluate.metrics=[fid,kid]",
            *overrides,
        )
    )


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a network connection."""

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch):
    """A torch hub cache with nothing in it (so torch-fidelity's IS weights are absent)."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return home
