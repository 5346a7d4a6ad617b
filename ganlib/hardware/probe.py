"""Pick the fastest of a few equivalent settings by timing them on this machine, once.

Candidates run interleaved over several rounds (a disturbance that hits one
round hits every candidate), each after a warm-up call, and the median time
decides. A preferred candidate (the more exact one, e.g. fp32) is kept unless
another is faster by more than `margin`: a setting that changes the numbers
has to pay for itself. The choice and its figures are cached per machine and
workload outside the repository, so a rerun (or a resume) on the same
machine gets the same choice without measuring, and never flips on noise.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from ganlib.io.atomic import atomic_write_json

PROBE_CACHE_FILE = "speed-probe.json"


@dataclass(frozen=True)
class ProbeResult:
    choice: str                  # the chosen candidate's name
    seconds: dict[str, float]    # median seconds per timed call, per candidate
    machine: str                 # MachineInfo.describe() of where it was measured
    cached: bool                 # read from the cache, not measured now

    def summary(self) -> str:
        """`bf16+channels_last (measured on CPU ...: fp32 101.2 ms, bf16+channels_last 52.0 ms per call)`."""
        figures = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in self.seconds.items())
        how = "cached measurement" if self.cached else "measured"
        return f"{self.choice} ({how} on {self.machine}: {figures} per call)"


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
) -> ProbeResult:
    """The cached choice for (machine, workload), or measure now, choose and cache it."""
    cache_file = Path(cache_dir) / PROBE_CACHE_FILE
    entries = _read_entries(cache_file)
    key = f"{machine_key} || {workload_key}"
    if key in entries:
        entry = entries[key]
        return ProbeResult(entry["choice"], dict(entry["seconds"]), entry["machine"], cached=True)
    seconds = measure()
    result = ProbeResult(fastest(seconds, prefer, margin), seconds, machine, cached=False)
    entries = _read_entries(cache_file)  # another process may have written meanwhile: keep its entries
    entries[key] = {
        "choice": result.choice, "seconds": result.seconds, "machine": machine,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_json(cache_file, {"format": "scenegan-speed-probe/1", "entries": entries})
    except OSError:
        pass  # a read-only home costs a re-measurement next time, nothing else
    return result


def _read_entries(cache_file: Path) -> dict[str, dict]:
    """The cache's entries; a missing, unreadable or foreign file counts as empty (it only saves time)."""
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
