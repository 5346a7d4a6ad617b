"""Reference statistics of the real data: computed once, reused, never stale.

An entry is keyed by what determines its numbers: the content hash of the
prepared images (sha256 of images.npy, so any changed pixel means a new
entry), the resolution, the extractor, the checksum of its weights file and
its layer, a digest of our code that turns stored images into features and
torch-fidelity's version (its resize code runs inside the extractor), and
which images were used (count and subset seed). The code digest follows the
same rule as a training run's (ganlib/io/source.py `result_code_digest`,
from FEATURE_CODE_ENTRIES): editing a comment, a docstring or an error
message does not throw away statistics that took minutes to compute, while
any change to what the code does (a scaling constant, a resize flag) does,
without anyone having to remember to bump a version. An entry stores the features themselves
(KID and precision/recall need them) and the FID mean/covariance, computed by
torch-fidelity's own function so that FID matches calculate_metrics'.

A class-conditional generator is also scored per class (ganlib/metrics/per_class.py)
against statistics of that class's real images alone: their entries' keys add the
class's name, the labels file's hash and a hash of exactly which rows they hold, so a
relabelled image or a renamed class never reuses another class's statistics, and the
whole dataset's entries are keyed as before.

Each entry is one .npz written atomically, with its key and a checksum of its
arrays inside; a file that fails to load, does not match its key or its
checksum is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch_fidelity
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_features_to_statistics

from ganlib.data.dataset import PreparedDataset
from ganlib.io.atomic import atomic_write_bytes, remove_stale_temporaries
from ganlib.io.source import result_code_digest
from ganlib.logs import Logger
from ganlib.metrics.errors import EvaluationError
from ganlib.metrics.extractors import ExtractorSpec
from ganlib.metrics.features import dataset_features
from ganlib.metrics.sources import PreparedImages, reference_indices

CACHE_FORMAT = "scenegan-reference-stats/1"

# Where our code between a stored uint8 image and its features starts: the extraction loop, the
# extractors, the image source (and what they reach, short of code that shapes no number).
FEATURE_CODE_ENTRIES = ("ganlib.metrics.features", "ganlib.metrics.extractors", "ganlib.metrics.sources")
# The project root that code is read from (ganlib/metrics/reference.py -> root).
FEATURE_CODE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ReferenceStats:
    features: torch.Tensor  # float32 [N, D], CPU
    mu: np.ndarray
    sigma: np.ndarray
    key: dict[str, Any]
    data_md5: str | None

    @property
    def fid_statistics(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu, "sigma": self.sigma}

    @property
    def count(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class ClassImages:
    """One class's real images: the rows of the prepared dataset whose label is that class (per-class FID)."""

    name: str
    indices: np.ndarray            # sorted rows of the prepared dataset, int64
    labels_sha256: str | None      # of the dataset's labels.npy, which says which rows are this class

    def identity(self) -> dict[str, Any]:
        """What a cache key adds for the class: its name, the labels file and exactly which rows."""
        rows = np.ascontiguousarray(self.indices, dtype=np.int64)
        return {"name": self.name, "labels_sha256": self.labels_sha256,
                "rows_sha256": hashlib.sha256(rows.tobytes()).hexdigest()}


def reference_key(
    dataset: PreparedDataset, spec: ExtractorSpec, n_reference: int, seed: int, subset: ClassImages | None = None,
) -> dict[str, Any]:
    """Everything that changes the statistics' numbers, and nothing else.

    A class's statistics (`subset`) are keyed by its rows as well: the same pixels labelled
    differently are other statistics, and a relabelled image moves an entry to a new key.
    """
    indices = _reference_rows(dataset, n_reference, seed, subset)
    key = {
        "format": CACHE_FORMAT,
        "dataset_sha256": dataset.content_hash,
        "resolution": dataset.resolution,
        "extractor": spec.identity(),  # bf16 features are other numbers than fp32 ones
        "extractor_weights": spec.weights_digest,
        "extractor_code": feature_code_digest(FEATURE_CODE_ROOT),
        "torch_fidelity": torch_fidelity.__version__,
        "feature_layer": spec.feature_layer,
        "n_images": dataset.count if indices is None else len(indices),
        "subset_seed": None if indices is None or subset is not None else seed,
    }
    # Only a class's key has this entry, so the whole dataset's keys (and cache files) stay as they were.
    return key if subset is None else {**key, "class": subset.identity()}


def _reference_rows(
    dataset: PreparedDataset, n_reference: int, seed: int, subset: ClassImages | None,
) -> np.ndarray | None:
    """The rows the statistics use: the seeded reference subset (None: all images), or the class's own rows."""
    return reference_indices(dataset.count, n_reference, seed) if subset is None else subset.indices


def feature_code_digest(root: Path) -> str:
    """16 hex digits of the feature code's digest under `root` (comments, layout and messages do not count)."""
    return result_code_digest(FEATURE_CODE_ENTRIES, root).digest[:16]


def reference_cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    # Class names are checked safe for paths when the data is prepared (ganlib/data/labels.py); the name is
    # only there for a person looking in the folder, the digest is what keys the entry.
    of_class = f"-class-{key['class']['name']}" if "class" in key else ""
    name = (f"{key['dataset_sha256'][:12]}-{key['resolution']}px-{key['extractor']}-{key['feature_layer']}"
            f"{of_class}-n{key['n_images']}-{digest}.npz")
    return Path(cache_dir) / name


def reference_statistics(
    dataset: PreparedDataset,
    spec: ExtractorSpec,
    make_extractor: Callable[[], FeatureExtractorBase],
    n_reference: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    cache_dir: Path,
    log: Logger,
    subset: ClassImages | None = None,
) -> tuple[ReferenceStats, bool]:
    """The dataset's reference statistics (or, with `subset`, one class's) and whether they came from the cache.

    `make_extractor` is only called on a cache miss, so a cached evaluation
    does not even load the network for the real side.
    """
    key = reference_key(dataset, spec, n_reference, seed, subset)
    of_class = "" if subset is None else f" of class {subset.name}"
    if key["n_images"] < 2:
        raise EvaluationError(
            f"{dataset.root}: reference statistics{of_class} need at least 2 real images, got {key['n_images']} "
            f"({dataset.count} prepared, evaluate.n_reference={n_reference}); a covariance of one image is undefined"
        )
    path = reference_cache_path(cache_dir, key)
    remove_stale_temporaries(path.parent)  # what writers killed mid-write left in the cache
    cached, problem = load_reference_stats(path, key)
    if cached is not None:
        log.info(f"reference statistics{of_class}: cached {path} ({cached.count} images)")
        return cached, True
    if problem is not None:
        log.warning(f"reference statistics{of_class}: {problem}; recomputing")

    started = time.perf_counter()
    images = PreparedImages(dataset.images, _reference_rows(dataset, n_reference, seed, subset))
    features = dataset_features(images, make_extractor(), batch_size, device)[spec.feature_layer]
    statistics = fid_features_to_statistics(features)
    stats = ReferenceStats(features, statistics["mu"], statistics["sigma"], key, dataset.data_md5)
    save_reference_stats(path, stats)
    log.info(
        f"reference statistics{of_class}: {len(images)} real images through {spec.name} in "
        f"{time.perf_counter() - started:.1f} s, cached at {path}"
    )
    return stats, False


def save_reference_stats(path: Path, stats: ReferenceStats) -> Path:
    features = stats.features.numpy()
    meta = {"key": stats.key, "data_md5": stats.data_md5, "arrays_sha256": _arrays_digest(features, stats.mu, stats.sigma)}
    buffer = io.BytesIO()
    np.savez(buffer, features=features, mu=stats.mu, sigma=stats.sigma, meta=np.array(json.dumps(meta, sort_keys=True)))
    return atomic_write_bytes(path, buffer.getvalue())


def load_reference_stats(path: Path, key: dict[str, Any]) -> tuple[ReferenceStats | None, str | None]:
    """(stats, None) for a valid entry; (None, why not) for a bad one; (None, None) when there is none."""
    if not path.is_file():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as archive:
            features, mu, sigma = archive["features"], archive["mu"], archive["sigma"]
            meta = json.loads(str(archive["meta"]))
    except Exception as exc:  # truncated zip, bad header, missing array: whatever it is, recompute
        return None, f"unreadable cache file {path} ({type(exc).__name__}: {exc})"
    if meta.get("key") != key:
        return None, f"cache file {path} was written for {meta.get('key')}, not {key}"
    if meta.get("arrays_sha256") != _arrays_digest(features, mu, sigma):
        return None, f"cache file {path} fails its checksum (corrupt)"
    return ReferenceStats(torch.from_numpy(features), mu, sigma, key, meta.get("data_md5")), None


def _arrays_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
