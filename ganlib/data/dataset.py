"""The prepared dataset: the one format that training and evaluation read.

Layout of `base.paths.prepared`:
    images.npy       uint8 array [N, R, R, 3] (NHWC, RGB), memory-mappable
    manifest.json    counts, resolution, the dataset's DVC md5, content hash
    qa_report.json   every rejected input file with its reason
    params.json      the resolved parameters the preprocess stage ran with

One memory-mapped array instead of thousands of small files: random access
is a slice, the OS page cache does the caching, and the content hash that
keys FID reference statistics is one hash of one file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganlib.errors import UserFacingError

FORMAT = "scenegan-prepared/1"
IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"
QA_REPORT_FILE = "qa_report.json"


class PreparedDatasetError(UserFacingError, RuntimeError):
    """The prepared dataset is missing or inconsistent; the message says what to run."""


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    images: np.ndarray  # read-only memmap, uint8 [N, R, R, 3]
    manifest: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def data_md5(self) -> str | None:
        """The DVC md5 of the raw dataset this was prepared from (None if untracked)."""
        return self.manifest.get("data_md5")

    @property
    def content_hash(self) -> str:
        """sha256 of images.npy: identifies exactly the pixels, whatever their origin."""
        return self.manifest["images_sha256"]


def open_prepared(root: str | Path) -> PreparedDataset:
    root = Path(root)
    images_path, manifest_path = root / IMAGES_FILE, root / MANIFEST_FILE
    if not manifest_path.is_file() or not images_path.is_file():
        raise PreparedDatasetError(
            f"{root}: no prepared dataset here (need {IMAGES_FILE} and {MANIFEST_FILE}); "
            "run the preprocess stage first: `dvc repro preprocess` or `scenegan run preprocess`"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise PreparedDatasetError(
            f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}; re-run preprocess"
        )
    images = np.load(images_path, mmap_mode="r")
    expected = (manifest["count"], manifest["resolution"], manifest["resolution"], 3)
    if images.dtype != np.uint8 or tuple(images.shape) != expected:
        raise PreparedDatasetError(
            f"{images_path}: shape {images.shape} dtype {images.dtype} does not match manifest {expected} uint8; "
            "re-run preprocess"
        )
    return PreparedDataset(root=root, images=images, manifest=manifest)
