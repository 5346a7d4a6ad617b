"""What the train stage attaches to the trainer's ticks (rank 0): the FID curve and the dvclive log.

    curves = TrainingCurves(params, log, root)
    train_gan(..., on_tick=curves.hook(on_tick))
    curves.finish(summary.run_dir)

At each tick: FID/KID when one is due (ganlib/metrics/during_training.py, off
when evaluate.during_training.every_kimg is 0), then the dvclive log
(ganlib/training/live_log.py) catches up with the run's history as its
checkpoint directory holds it (stats.jsonl and fid_curve.csv), then `on_tick`.
Reading the history rather than remembering ticks is what makes a resumed run's
log complete: it starts with the ticks before the interruption.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ganlib.config import Params
from ganlib.logs import Logger
from ganlib.training.live_log import LiveTick, TrainingLiveLog

if TYPE_CHECKING:
    from ganlib.metrics.during_training import TrainingEvaluator
    from ganlib.training.loop import TickReport

TickCallback = Callable[["TickReport"], None]
# stats.jsonl record -> dvclive metric name
LIVE_METRICS = {"kimg": "kimg", "loss_d": "loss_d", "loss_g": "loss_g", "penalty": "penalty",
                "img_per_s": "img_per_s", "diversity_ratio": "diversity"}
# fid_curve.csv column -> dvclive metric name
LIVE_CURVE_METRICS = {"fid": "fid", "kid_mean": "kid"}


class TrainingCurves:
    """The per-tick FID curve and dvclive log of one training run."""

    def __init__(self, params: Params, log: Logger, root: Path):
        self.params = params
        self.log = log
        self.root = Path(root)
        self.live = TrainingLiveLog(self.root / params.base.paths.live, log)
        self._evaluator: TrainingEvaluator | None = None

    def hook(self, on_tick: TickCallback | None = None) -> TickCallback:
        """The trainer's tick callback: FID when due, the dvclive log, then `on_tick`."""

        def tick(report: TickReport) -> None:
            if self._fid_curve_on():
                self._fid_evaluator(report).maybe_measure(report.generator, self.params.train.z_dim, report.kimg,
                                                          report.classes)
            self.live.catch_up(self._run_ticks(report.run_dir))
            if on_tick is not None:
                on_tick(report)

        return tick

    def finish(self, run_dir: Path) -> None:
        """Complete and close the dvclive log (a resumed run with nothing left to train only writes it here)."""
        self.live.finish(self._run_ticks(run_dir))

    def _fid_curve_on(self) -> bool:
        return self.params.evaluate.during_training.every_kimg > 0

    def _fid_evaluator(self, report: TickReport) -> TrainingEvaluator:
        if self._evaluator is None:  # built lazily: the run directory is only known once training runs
            # Imported only when the curve is on: the extractor and torch-fidelity take seconds to import.
            from ganlib.metrics.during_training import TrainingEvaluator, curve_path

            device = next(report.generator.parameters()).device
            self._evaluator = TrainingEvaluator(self.params, self.log, self.root, curve_path(report.run_dir), device)
        return self._evaluator

    def _run_ticks(self, run_dir: Path) -> list[LiveTick]:
        from ganlib.training.loop import STATS_FILE

        stats_file = Path(run_dir) / STATS_FILE
        records = [json.loads(line) for line in stats_file.read_text().splitlines()] if stats_file.is_file() else []
        measured = {_images_shown(row["kimg"]): row for row in self._fid_rows(run_dir)}
        return [_live_tick(record, measured.get(_images_shown(record["kimg"])), Path(run_dir)) for record in records]

    def _fid_rows(self, run_dir: Path) -> list[dict[str, Any]]:
        if not self._fid_curve_on():
            return []
        from ganlib.metrics.during_training import curve_path, read_curve

        return read_curve(curve_path(run_dir))


def _images_shown(kimg: float) -> int:
    return int(round(kimg * 1000))


def _live_tick(record: dict[str, Any], fid_row: dict[str, Any] | None, run_dir: Path) -> LiveTick:
    metrics = {name: float(record[key]) for key, name in LIVE_METRICS.items() if key in record}
    if fid_row is not None:
        metrics |= {name: float(fid_row[key]) for key, name in LIVE_CURVE_METRICS.items() if key in fid_row}
    grid = run_dir / record["grid"] if record.get("grid") else None
    return LiveTick(images_shown=_images_shown(record["kimg"]), metrics=metrics, grid=grid)
