"""The FID/KID curve measured while training runs (evaluate.during_training).

The trainer knows nothing about metrics; this wraps its per-tick callback.
The curve is written into the run's working directory (which survives an
interruption; a resumed run carries on from its last point), and the
trainer publishes every CSV there with its outputs, so it ends up as
`<base.paths.train>/fid_curve.csv`, where `dvc plots show` finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ganlib.config import Params
from ganlib.logs import Logger
from ganlib.metrics.during_training import CURVE_FILE, TrainingEvaluator
from ganlib.training.loop import TickReport

TickCallback = Callable[[TickReport], None]


def with_fid_curve(params: Params, log: Logger, root: Path, on_tick: TickCallback | None = None) -> TickCallback | None:
    """`on_tick`, preceded by a FID/KID measurement whenever one is due (or `on_tick` itself when off)."""
    if params.evaluate.during_training.every_kimg <= 0:
        return on_tick
    evaluator: TrainingEvaluator | None = None

    def tick(report: TickReport) -> None:
        nonlocal evaluator
        if evaluator is None:  # built lazily: the run directory is only known once training runs
            device = next(report.generator.parameters()).device
            evaluator = TrainingEvaluator(params, log, root, report.run_dir / CURVE_FILE, device)
        evaluator.maybe_measure(report.generator, params.train.z_dim, report.kimg)
        if on_tick is not None:
            on_tick(report)

    return tick
