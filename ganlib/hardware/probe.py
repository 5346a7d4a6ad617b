"""Pick the fastest of a few equivalent settings by timing them on this machine, once.

Candidates run interleaved over several rounds (a disturbance that hits one
round hits every candidate), each after a warm-up call, and the median time
decides. A preferred candidate (the more exact one, e.g. fp32) is kept unless
another is faster by more than `margin`: a setting that changes the numbers
has to pay for itself. The choice and its figures are cached per machine and
workload outside the repository, so a rerun (or a resume) on the same
machine gets the same choice without measuring, and never flips on noise.

The cache is shared by every process of the user on the machine (torchrun
ranks, parallel runs, evaluations), so a measurement and its cache update run
under an exclusive lock: concurrent probes keep every entry, and a probe that
waited for another one of the same key takes its choice instead of measuring
again. Each entry records how loaded the machine was when it measured, so a
choice made on a busy machine can be recognised in the run log.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

from ganlib.io.atomic import atomic_write_json, remove_stale_temporaries

try:
    import fcntl
except ImportError:  # Windows: no flock; see _cache_lock
    fcntl = None  # type: ignore[assignment]

PROBE_CACHE_FILE = "speed-probe.json"
PROBE_CACHE_FORMAT = "scenegan-speed-probe/2"  # /2: machine keys without the thread count, entries with the load


@dataclass(frozen=True)
class MachineLoad:
    """The 1-minute load average when a measurement started, and the CPUs it is shared among."""

    load_1min: float
    cpus: int

    @property
    def busy(self) -> bool:
        """More runnable work than CPUs: the timed candidates competed for them, unevenly."""
        return self.load_1min > self.cpus

    def describe(self) -> str:
        return f"load {self.load_1min:.1f} on {self.cpus} CPUs"


def current_load() -> MachineLoad | None:
    """The machine's load now; None where the OS has no load average (Windows)."""
    try:
        one_minute = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    # The load average counts the whole machine's work, so it is compared with all its CPUs,
    # not only those this process may use.
    return MachineLoad(round(one_minute, 2), os.cpu_count() or 1)


@dataclass(frozen=True)
class ProbeResult:
    choice: str                  # the chosen candidate's name
    seconds: dict[str, float]    # median seconds per timed call, per candidate
    machine: str                 # MachineInfo.describe() of where it was measured
    cached: bool                 # read from the cache, not measured now
    load: MachineLoad | None = None  # the machine's load when it was measured; None: not recorded

    def summary(self) -> str:
        """`bf16 (measured on CPU ...: fp32 101.2 ms, bf16 52.0 ms per call, measured at load 0.3 on 2 CPUs)`."""
        figures = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in self.seconds.items())
        how = "cached measurement" if self.cached else "measured"
        return f"{self.choice} ({how} on {self.machine}: {figures} per call, {self._load_note()})"

    def _load_note(self) -> str:
        if self.load is None:
            return "machine load not recorded"
        note = f"measured at {self.load.describe()}"
        if self.load.busy:
            note += (f"; the machine was busier than its CPUs, so these figures may be noisy "
                     f"(delete {PROBE_CACHE_FILE} in the machine cache to measure again)")
        return note


def speed_candidates(precision: str, channels_last: bool | str, auto_precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict[str, tuple[str, bool]]:
    """`name -> (precision, channels_last)` to time: every value an `auto` setting may take, crossed."""
    precisions = auto_precisions if precision == "auto" else (precision,)
    layouts = (False, True) if channels_last == "auto" else (bool(channels_last),)
    return {candidate_name(p, layout): (p, layout) for p in precisions for layout in layouts}


def candidate_name(precision: str, channels_last: bool) -> str:
    """`bf16+channels_last`, `fp32`: how a candidate reads in logs and in the cache."""
    return f"{precision}+channels_last" if channels_last else precision


def time_candidates(candidates: Mapping[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each candidate, interleaved over `rounds` after one warm-up call each."""
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def fastest(seconds: Mapping[str, float], prefer: str, margin: float) -> str:
    """The fastest candidate, unless `prefer` is within `margin` (0.1 = 10%) of it."""
    best = min(seconds, key=seconds.get)
    if prefer in seconds and seconds[prefer] <= seconds[best] * (1 + margin):
        return prefer
    return best


def probed_choice(
    cache_dir: Path,
    machine: str,
    machine_key: str,
    workload_key: str,
    measure: Callable[[], dict[str, float]],
    prefer: str,
    margin: float,
    sample_load: Callable[[], MachineLoad | None] = current_load,
) -> ProbeResult:
    """The cached choice for (machine, workload), or measure now, choose and cache it."""
    cache_file = Path(cache_dir) / PROBE_CACHE_FILE
    key = f"{machine_key} || {workload_key}"
    cached = _cached_result(cache_file, key)
    if cached is not None:
        return cached
    # Measuring holds the lock: a process probing the same key meanwhile waits, then takes
    # this choice instead of measuring again (a second measurement could flip it), and two
    # probes never time their candidates at once, disturbing each other's figures.
    with _cache_lock(cache_file):
        cached = _cached_result(cache_file, key)
        if cached is not None:
            return cached
        load = sample_load()  # before measuring: the work of others, not of this probe
        seconds = measure()
        result = ProbeResult(fastest(seconds, prefer, margin), seconds, machine, cached=False, load=load)
        _store(cache_file, key, result)
    return result


@contextlib.contextmanager
def _cache_lock(cache_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `speed-probe.json.lock` beside the cache, for a read-modify-write.

    The lock file is never removed (removing it would let two processes lock different files);
    the kernel releases the lock when its holder exits, however it exits. Without fcntl
    (Windows), or where the lock file cannot be made (a read-only cache, where nothing is
    written anyway), this runs unlocked: concurrent probes may then both measure and one
    entry may be lost, which costs a measurement next time and nothing else.
    """
    fd = _open_lock_file(cache_file.with_name(cache_file.name + ".lock")) if fcntl is not None else None
    if fd is None:
        yield
        return
    try:
        with contextlib.suppress(OSError):  # a file system without locks (some network mounts): unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock_file(path: Path) -> int | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return None


def _cached_result(cache_file: Path, key: str) -> ProbeResult | None:
    entry = _read_entries(cache_file).get(key)
    if entry is None:
        return None
    return ProbeResult(entry["choice"], dict(entry["seconds"]), entry["machine"], cached=True, load=_entry_load(entry))


def _entry_load(entry: dict) -> MachineLoad | None:
    load, cpus = entry.get("load_1min"), entry.get("load_cpus")
    if isinstance(load, (int, float)) and isinstance(cpus, int) and not isinstance(cpus, bool):
        return MachineLoad(float(load), cpus)
    return None


def _store(cache_file: Path, key: str, result: ProbeResult) -> None:
    """Add one entry to the cache, keeping every other; the caller holds the lock."""
    entries = _read_entries(cache_file)
    entry: dict = {
        "choice": result.choice, "seconds": result.seconds, "machine": result.machine,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if result.load is not None:
        entry.update(load_1min=result.load.load_1min, load_cpus=result.load.cpus)
    entries[key] = entry
    try:
        remove_stale_temporaries(cache_file.parent)  # what writers killed mid-write left behind
        atomic_write_json(cache_file, {"format": PROBE_CACHE_FORMAT, "entries": entries})
    except OSError:
        pass  # a read-only home costs a re-measurement next time, nothing else


def _read_entries(cache_file: Path) -> dict[str, dict]:
    """The cache's entries; a missing, unreadable or foreign file counts as empty (it only saves time).

    Entries of any format are kept: keys of an older format simply never match now (one
    re-measurement), and a checkout still writing the older format keeps these in turn.
    """
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {
        key: entry for key, entry in entries.items()
        if isinstance(entry, dict) and isinstance(entry.get("choice"), str) and isinstance(entry.get("seconds"), dict)
        and isinstance(entry.get("machine"), str)
    }
