"""The reference-statistics cache clears what writers killed mid-write left in it, and nothing else."""

from __future__ import annotations

import torch
from test_atomic import killed_mid_write
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
    killed_mid_write(cache_dir / "other.npz")
    assert any(p.name.startswith(".other.npz.") for p in cache_dir.iterdir())

    _, cached = statistics()
    assert cached is True
    assert sorted(cache_dir.iterdir()) == [entry]
