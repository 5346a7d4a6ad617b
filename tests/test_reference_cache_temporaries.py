"""The reference-statistics cache clears what writers killed mid-write left in it, and nothing else."""

from __future__ import annotations

import subprocess
import sys

import torch
from test_metrics_support import project, tiny_params

from ganlib.data.dataset import open_prepared
from ganlib.logs import plain_logger
from ganlib.metrics.extractors import build_extractor, resolve_extractor
from ganlib.metrics.reference import reference_statistics

LOG = plain_logger("scenegan-tests")


def test_reading_the_cache_removes_a_killed_writers_temporary_and_keeps_entries(tmp_path):
    root = project(tmp_path)
    params = tiny_params()
    dataset = open_prepared(root / params.base.paths.prepared)
    spec = resolve_extractor(params.evaluate, root / params.base.paths.weights, root)
    cache_dir = root / params.base.paths.fid_cache

    def statistics():
        make = lambda: build_extractor(spec, [spec.feature_layer], torch.device("cpu"))  # noqa: E731
        return reference_statistics(dataset, spec, make, 0, params.evaluate.seed, 8, torch.device("cpu"), cache_dir, LOG)

    statistics()
    [entry] = sorted(cache_dir.glob("*.npz"))
    killed = (
        "import os\n"
        "import ganlib.io.atomic as atomic\n"
        "atomic.os.replace = lambda *a: os.kill(os.getpid(), 9)\n"
        f"atomic.atomic_write_bytes({str(cache_dir / 'other.npz')!r}, b'half')\n"
    )
    subprocess.run([sys.executable, "-c", killed], check=False, timeout=120)
    assert any(p.name.startswith(".other.npz.") for p in cache_dir.iterdir())

    _, cached = statistics()
    assert cached is True
    assert sorted(cache_dir.iterdir()) == [entry]
