"""Telling the user when CPU training fights another process for the cores (ganlib/training/throughput.py)."""

from __future__ import annotations

from ganlib.hardware.probe import MachineLoad
from ganlib.training.throughput import ThroughputWatch, busy_machine_warning


def test_a_busy_machine_is_named_before_training_starts():
    assert busy_machine_warning(threads=2, load=MachineLoad(1.8, 2)) is not None
    assert "OMP_NUM_THREADS=1" in busy_machine_warning(threads=2, load=MachineLoad(1.8, 2))
    assert busy_machine_warning(threads=2, load=MachineLoad(0.1, 2)) is None       # an idle machine
    assert busy_machine_warning(threads=1, load=MachineLoad(3.0, 2)) is None       # one thread cannot oversubscribe
    assert busy_machine_warning(threads=4, load=MachineLoad(3.0, 16)) is None      # plenty of free cores
    assert busy_machine_warning(threads=2, load=None) is None      # no load average on this platform


def test_a_collapse_is_said_once_and_a_recovery_resets_it():
    watch = ThroughputWatch(threads=2, load=lambda: MachineLoad(2.7, 2))
    said = [watch.observe(rate) for rate in (480, 520, 500, 25, 20, 510, 15)]
    assert [text is not None for text in said] == [False, False, False, True, False, False, True]
    assert "25 img/s from 520 img/s" in said[3] and "load 2.7 on 2 CPUs" in said[3]
    assert "OMP_NUM_THREADS=1" in said[3]


def test_a_slower_tick_within_reason_is_not_a_collapse():
    watch = ThroughputWatch(threads=1, load=lambda: None)
    assert all(watch.observe(rate) is None for rate in (100, 60, 40, 90, 35))
