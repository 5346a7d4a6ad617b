"""The speed-probe cache shared by processes: locked updates, one measurement per key, the load recorded.

Kept free of torch imports: the concurrency tests start fresh processes that import this module.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from ganlib.hardware import probe
from ganlib.hardware.probe import PROBE_CACHE_FILE, MachineLoad, ProbeResult, probed_choice

SPAWN = multiprocessing.get_context("spawn")  # a forked pytest process may hold locks of its threads
QUIET = MachineLoad(0.2, 2)


def quiet() -> MachineLoad:
    return QUIET


def probe_keys(cache_dir: str, worker: int, keys: int, start: multiprocessing.synchronize.Barrier) -> None:
    """One process's probes: `keys` workloads of its own, each measured once."""
    start.wait()
    for index in range(keys):
        def measure() -> dict[str, float]:
            time.sleep(0.01)  # long enough for the other processes' updates to interleave with this one
            return {"fp32": 1.0, "bf16": 0.4 if index % 2 else 2.0}

        probed_choice(Path(cache_dir), "CPU X", "cpu|X", f"worker {worker} workload {index}", measure,
                      prefer="fp32", margin=0.1, sample_load=quiet)


def probe_one_key(cache_dir: str, worker: int, start: multiprocessing.synchronize.Barrier, results) -> None:
    """Probe the shared key; this worker's own measurement would choose differently from the other's."""
    start.wait()

    def measure() -> dict[str, float]:
        with open(Path(cache_dir) / "measurements", "a") as marker:
            marker.write(f"{worker}\n")
        time.sleep(0.3)  # the other process reaches the lock while this one measures
        return {"fp32": 1.0, "bf16": 0.4} if worker == 0 else {"fp32": 1.0, "bf16": 2.0}

    result = probed_choice(Path(cache_dir), "CPU X", "cpu|X", "shared workload", measure,
                           prefer="fp32", margin=0.1, sample_load=quiet)
    results.put((worker, result.choice, result.cached))


def run_processes(target, args_per_process: list[tuple]) -> None:
    processes = [SPAWN.Process(target=target, args=args) for args in args_per_process]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * len(processes)


def test_concurrent_probes_of_different_workloads_keep_every_entry(tmp_path):
    workers, keys = 4, 3
    start = SPAWN.Barrier(workers)
    run_processes(probe_keys, [(str(tmp_path), worker, keys, start) for worker in range(workers)])
    entries = json.loads((tmp_path / PROBE_CACHE_FILE).read_text())["entries"]
    expected = {f"cpu|X || worker {w} workload {i}": ("bf16" if i % 2 else "fp32")
                for w in range(workers) for i in range(keys)}
    assert {key: entry["choice"] for key, entry in entries.items()} == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_two_processes_probing_one_workload_measure_it_once_and_agree(tmp_path):
    start, results = SPAWN.Barrier(2), SPAWN.Queue()
    run_processes(probe_one_key, [(str(tmp_path), worker, start, results) for worker in range(2)])
    outcomes = sorted(results.get(timeout=10) for _ in range(2))
    assert len((tmp_path / "measurements").read_text().splitlines()) == 1
    assert len({choice for _, choice, _ in outcomes}) == 1  # no flip between the two processes
    assert sorted(cached for _, _, cached in outcomes) == [False, True]


def test_a_probe_that_waited_for_the_lock_takes_the_entry_written_meanwhile(tmp_path, monkeypatch):
    """The re-read after locking: another process measured this key while this one waited for it."""
    fcntl = pytest.importorskip("fcntl")
    first_read = threading.Event()
    read_entries = probe._read_entries

    def spying_read(cache_file: Path) -> dict[str, dict]:
        entries = read_entries(cache_file)
        first_read.set()
        return entries

    monkeypatch.setattr(probe, "_read_entries", spying_read)
    measured: list[int] = []
    outcome: list[ProbeResult] = []
    lock = os.open(tmp_path / f"{PROBE_CACHE_FILE}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the "other process", measuring
        waiting = threading.Thread(target=lambda: outcome.append(probed_choice(
            tmp_path, "CPU X", "cpu|X", "w", lambda: measured.append(1) or {"fp32": 1.0, "bf16": 2.0},
            prefer="fp32", margin=0.1, sample_load=quiet)))
        waiting.start()
        assert first_read.wait(timeout=30)  # it found nothing and now waits for the lock
        other = {"choice": "bf16", "seconds": {"fp32": 1.0, "bf16": 0.4}, "machine": "CPU X (other process)"}
        (tmp_path / PROBE_CACHE_FILE).write_text(json.dumps({"entries": {"cpu|X || w": other}}))
    finally:
        os.close(lock)
    waiting.join(timeout=30)
    assert not measured
    assert (outcome[0].choice, outcome[0].cached, outcome[0].machine) == ("bf16", True, "CPU X (other process)")


def test_the_summary_says_how_loaded_the_machine_was_when_it_measured(tmp_path):
    figures = {"fp32": 0.1, "bf16": 0.05}
    calm = ProbeResult("bf16", figures, "CPU X", cached=False, load=MachineLoad(1.94, 2))
    assert "measured at load 1.9 on 2 CPUs" in calm.summary() and "noisy" not in calm.summary()
    busy = ProbeResult("bf16", figures, "CPU X", cached=True, load=MachineLoad(3.5, 2))
    assert "measured at load 3.5 on 2 CPUs" in busy.summary() and "may be noisy" in busy.summary()
    assert "load not recorded" in ProbeResult("fp32", figures, "CPU X", cached=True).summary()

    # The load is sampled when measuring, stored with the entry, and shown again when it is reused.
    busy_now = MachineLoad(5.25, 2)
    first = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: figures, prefer="fp32", margin=0.1,
                          sample_load=lambda: busy_now)
    again = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: figures, prefer="fp32", margin=0.1,
                          sample_load=lambda: QUIET)
    assert first.load == again.load == busy_now and again.cached
    assert "may be noisy" in again.summary()
    entry = json.loads((tmp_path / PROBE_CACHE_FILE).read_text())["entries"]["cpu|X || w"]
    assert (entry["load_1min"], entry["load_cpus"]) == (5.25, 2)


def test_current_load_is_the_one_minute_average_over_the_machines_cpus():
    load = probe.current_load()
    if load is None:  # no load average on this OS
        assert not hasattr(os, "getloadavg")
        return
    assert load.load_1min >= 0 and load.cpus == os.cpu_count()


def test_entries_of_the_older_format_miss_once_and_are_kept(tmp_path):
    old = {"choice": "fp32", "seconds": {"fp32": 1.0}, "machine": "CPU X, 2 torch threads"}
    (tmp_path / PROBE_CACHE_FILE).write_text(json.dumps({
        "format": "scenegan-speed-probe/1",
        "entries": {"cpu|X|avx2|2|2.14.1 || w": old, "cpu|X || broken": {"choice": 3}},
    }))
    measured: list[int] = []
    result = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: measured.append(1) or {"fp32": 1.0},
                           prefer="fp32", margin=0.1, sample_load=quiet)
    assert not result.cached and measured == [1]
    data = json.loads((tmp_path / PROBE_CACHE_FILE).read_text())
    assert data["format"] == probe.PROBE_CACHE_FORMAT
    assert set(data["entries"]) == {"cpu|X|avx2|2|2.14.1 || w", "cpu|X || w"}
    # An entry without a recorded load (or with a damaged one) is still used.
    data["entries"]["cpu|X || w"]["load_1min"] = "high"
    (tmp_path / PROBE_CACHE_FILE).write_text(json.dumps(data))
    reused = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: measured.append(1) or {"fp32": 1.0},
                           prefer="fp32", margin=0.1)
    assert reused.cached and reused.load is None and measured == [1]


def test_writing_the_cache_removes_temporaries_of_killed_writers(tmp_path):
    abandoned = tmp_path / f".{PROBE_CACHE_FILE}.k1ll3d.tmp"  # no writer in its name, untouched for two days
    abandoned.write_text('{"entries": {')
    two_days_ago = time.time() - 2 * 86400
    os.utime(abandoned, (two_days_ago, two_days_ago))
    unrelated = tmp_path / "reference-stats.npz"
    unrelated.write_bytes(b"kept")
    os.utime(unrelated, (two_days_ago, two_days_ago))
    probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: {"fp32": 1.0}, prefer="fp32", margin=0.1, sample_load=quiet)
    assert not abandoned.exists() and unrelated.exists()
    assert json.loads((tmp_path / PROBE_CACHE_FILE).read_text())["entries"]


def test_without_file_locks_the_cache_still_works_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "fcntl", None)
    first = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: {"fp32": 1.0, "bf16": 0.4},
                          prefer="fp32", margin=0.1, sample_load=quiet)
    again = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: {"fp32": 1.0, "bf16": 2.0},
                          prefer="fp32", margin=0.1, sample_load=quiet)
    assert (first.choice, first.cached, again.choice, again.cached) == ("bf16", False, "bf16", True)
    assert not (tmp_path / f"{PROBE_CACHE_FILE}.lock").exists()


def test_a_read_only_cache_directory_only_costs_measurements(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        if os.access(cache, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        results = [probed_choice(cache, "CPU X", "cpu|X", "w", lambda: {"fp32": 1.0}, prefer="fp32", margin=0.1,
                                 sample_load=quiet) for _ in range(2)]
        assert [result.cached for result in results] == [False, False]
    finally:
        cache.chmod(0o700)
