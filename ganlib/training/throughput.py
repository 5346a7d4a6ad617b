"""Telling the user when CPU training is fighting another process for the cores.

torch runs one intra-op thread per core by default. When another process
(a second training run, a test suite) is busy on the same cores, those
threads wait on each other at every operation: measured here on 2 cores,
training fell from ~500 img/s to 9-28 img/s, where one thread per process
loses only the share the other process takes. Nothing is changed behind the
user's back (the thread count comes from torch, which honours
OMP_NUM_THREADS); the log says what is happening and what to do, once when
training starts on a busy machine and once each time a tick's throughput
collapses against the best tick so far.

The thread count is not part of a run's identity: a run resumes under any
thread count. On a CPU the result is then not bit-identical to an
uninterrupted run (oneDNN splits its reductions by thread), only equal to
rounding; with the same thread count it is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ganlib.hardware.probe import MachineLoad, current_load

COLLAPSE_RATIO = 1 / 3   # a tick this much slower than the best one so far has collapsed


def busy_machine_warning(threads: int, load: MachineLoad | None) -> str | None:
    """A warning when other work already keeps the CPUs busy while training is about to use `threads` threads."""
    if load is None or threads <= 1 or load.load_1min + threads <= load.cpus + 0.5:
        return None
    return (f"train: the machine is busy ({load.describe()}) and training uses {threads} torch threads; "
            "threads that share cores with another process can make training 10-50x slower. If throughput "
            "collapses, run with OMP_NUM_THREADS=1 (or fewer threads than free cores)")


@dataclass
class ThroughputWatch:
    """Remembers the best tick's img/s and says when a tick falls far below it (once per collapse)."""

    threads: int
    load: Callable[[], MachineLoad | None] = current_load
    best: float = 0.0
    collapsed: bool = False

    def observe(self, img_per_s: float) -> str | None:
        """A warning for this tick, or None."""
        if img_per_s >= self.best * COLLAPSE_RATIO:
            self.best = max(self.best, img_per_s)
            self.collapsed = False
            return None
        if self.collapsed:
            return None
        self.collapsed = True
        load = self.load()
        busy = f"{load.describe()}, " if load is not None else ""
        advice = ("another process is competing for the cores: run with OMP_NUM_THREADS=1 or stop the other work"
                  if self.threads > 1 else "another process is competing for the core")
        return (f"train: throughput collapsed to {img_per_s:.0f} img/s from {self.best:.0f} img/s ({busy}"
                f"{self.threads} torch threads); {advice}")
