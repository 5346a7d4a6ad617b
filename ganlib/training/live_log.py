"""Training curves and sample grids written through dvclive, tick by tick, for DVC's views.

    live = TrainingLiveLog(directory, log)
    live.catch_up(ticks)    # every tick not written yet, in order
    live.finish(ticks)      # the same, then dvclive's end of run

A tick is one LiveTick: the images shown so far (dvclive's step), its numbers
(losses, img/s, diversity, and FID/KID at the ticks where they were measured)
and the fixed-latent sample grid. dvclive writes `<directory>/metrics.json`
(the latest values), `plots/metrics/<name>.tsv` (one row per step) and
`plots/images/samples/<step>.png` (the step slider of DVC Studio and the VS
Code extension); dvc.yaml declares them, so `dvc plots show` draws them and
the files change while `dvc exp run` trains.

The step is the number of images shown, not the tick number, so that runs with
other batch sizes or tick lengths line up in `dvc plots diff`.

Resuming: DVC deletes a stage's outputs before it runs, and a run killed between
two ticks may have logged a tick its checkpoint does not have. So the log is
never continued from what is on disk: the caller passes every tick of the run
(its checkpointed history), and the first call rewrites the log from them;
the steps then go on from the last one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ganlib.logs import Logger

if TYPE_CHECKING:
    from dvclive import Live

SAMPLES_IMAGE = "samples"  # plots/images/samples/<step>.png


@dataclass(frozen=True)
class LiveTick:
    images_shown: int
    metrics: dict[str, float]
    grid: Path | None  # the tick's sample grid, if it is still on disk


class TrainingLiveLog:
    """dvclive's files for one training run, written from the run's ticks."""

    def __init__(self, directory: Path, log: Logger):
        self.directory = Path(directory)
        self.log = log
        self._live: Live | None = None
        self._enabled = True
        self._last_step = -1

    def catch_up(self, ticks: Sequence[LiveTick]) -> None:
        """Write the ticks after the last one written (all of them on the first call)."""
        new = [tick for tick in ticks if tick.images_shown > self._last_step]
        if not new:
            return
        live = self._open()
        if live is None:
            return
        for tick in new:
            live.step = tick.images_shown
            for name, value in tick.metrics.items():
                live.log_metric(name, value)
            if tick.grid is not None and tick.grid.is_file():
                live.log_image(f"{SAMPLES_IMAGE}/{tick.images_shown}.png", tick.grid)
            live.make_summary()
            self._last_step = tick.images_shown

    def finish(self, ticks: Sequence[LiveTick]) -> None:
        """Catch up (a resumed run that had nothing left to train logs its history here) and close."""
        self.catch_up(ticks)
        if (live := self._open()) is not None:
            live.end()

    def _open(self) -> Live | None:
        if self._live is None and self._enabled:
            if not _inside_dvc_repository(Path.cwd()):
                # dvclive would `dvc init` the enclosing git repository (or log into a temporary one).
                self.log.warning("training log: %s is not inside a DVC repository, so the dvclive log (%s) is "
                                 "not written; stats.jsonl has every tick", Path.cwd(), self.directory)
                self._enabled = False
                return None
            self._live = _start_live(self.directory)
        return self._live


def _inside_dvc_repository(path: Path) -> bool:
    path = path.resolve()
    return any((folder / ".dvc").is_dir() for folder in (path, *path.parents))


def _start_live(directory: Path) -> Live:
    # dvclive logs each call at INFO ("Logging to experiment ..."); the trainer's log says what matters.
    logging.getLogger("dvclive").setLevel(logging.WARNING)
    from dvclive import Live

    # save_dvc_exp=False: the stage runs under dvc repro / dvc exp run, which record the experiment;
    # dvcyaml=None: dvc.yaml declares the plots, and dvclive must not rewrite it.
    # resume=False: start from an empty log, which catch_up fills from the run's history.
    return Live(dir=str(directory), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
