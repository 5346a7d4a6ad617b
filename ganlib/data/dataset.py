"""The prepared dataset: the one format that training and evaluation read.

Layout of `base.paths.prepared`:
    images.npy       uint8 array [N, R, R, 3] (NHWC, RGB), memory-mappable
    labels.npy       int32 array [N]: each image's class index, same order; only when the data has
                     classes (ganlib/data/labels.py), memory-mappable
    manifest.json    counts, resolution, the dataset's DVC md5, content hash; "classes" (names in
                     index order, [] when unlabelled), "class_counts", "labels_sha256" (of labels.npy,
                     null when unlabelled) and "labels_source" ("folders", "file:<name>" or null)
    qa_report.json   every rejected input file with its reason; class counts and warnings
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
LABELS_FILE = "labels.npy"
MANIFEST_FILE = "manifest.json"
QA_REPORT_FILE = "qa_report.json"


class PreparedDatasetError(UserFacingError, RuntimeError):
    """The prepared dataset is missing or inconsistent; the message says what to run."""


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    images: np.ndarray  # read-only memmap, uint8 [N, R, R, 3]
    manifest: dict[str, Any]
    labels: np.ndarray | None = None  # read-only memmap, int32 [N]: class index per image; None unlabelled

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in label order (labels[i] names class_names[labels[i]]); () when the data has no labels."""
        return tuple(self.manifest.get("classes") or ())

    @property
    def labels_hash(self) -> str | None:
        """sha256 of labels.npy (None when unlabelled); content_hash stays the images' alone."""
        return self.manifest.get("labels_sha256")

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
    return PreparedDataset(root=root, images=images, manifest=manifest, labels=_open_labels(root, manifest))


def _open_labels(root: Path, manifest: dict[str, Any]) -> np.ndarray | None:
    """labels.npy, checked against the manifest; None when the manifest names no classes.

    Every label is range-checked here, once, so that a damaged file is this clear error
    and never an index error (or a silently wrong class embedding) deep in training.
    """
    classes = manifest.get("classes") or []  # a manifest from before labels: no classes
    if not classes:
        return None
    path = root / LABELS_FILE
    rerun = "re-run the preprocess stage: `dvc repro preprocess` (or `scenegan run preprocess`)"
    if not path.is_file() or not manifest.get("labels_sha256"):
        raise PreparedDatasetError(f"{path}: missing, but {root / MANIFEST_FILE} names {len(classes)} classes; {rerun}")
    try:
        labels = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise PreparedDatasetError(f"{path}: not a readable .npy array ({exc}); {rerun}") from None
    if labels.dtype != np.int32 or labels.ndim != 1 or labels.shape[0] != manifest["count"]:
        raise PreparedDatasetError(
            f"{path}: shape {labels.shape} dtype {labels.dtype}, but the manifest's {manifest['count']} images need "
            f"int32 [{manifest['count']}] (one class index per image); {rerun}"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(classes):
        raise PreparedDatasetError(
            f"{path}: class indices {low}..{high} are out of range for the manifest's {len(classes)} classes "
            f"(0..{len(classes) - 1}); {rerun}"
        )
    return labels
