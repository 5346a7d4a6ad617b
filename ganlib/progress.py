"""Progress of a long counted job: a bar for a person at a terminal, rate lines for a log.

    with Progress(log, total=len(files), what="import", unit="files") as progress:
        for path in files:
            copy(path)
            progress.advance()

When stderr is a terminal, a tqdm bar is drawn on it and the log gets no
progress lines (they would tear the bar). Otherwise (a pipe, a file, CI, a
Prefect worker) a line like

    import: 1200/7147 files, 310 files/s, ETA 16 s

goes through `log` at most every `interval_s` seconds, so a Prefect run
logger puts it in the run's log and a plain logger on stderr. A job that
reported at least once also logs a last line when it closes; a short job
logs nothing, and its caller's own summary line is enough.

`total` may be None when the count is not known in advance (a streamed tar
archive); the lines then give the count and the rate without an ETA.
Nothing here is global: each job makes its own reporter.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Callable, TextIO

from ganlib.logs import Logger

DEFAULT_INTERVAL_S = 10.0


class Progress:
    """Counts a job's units and reports them: `advance(n)` as they are done, `close()` (or `with`) at the end."""

    def __init__(
        self,
        log: Logger,
        total: int | None,
        what: str,
        unit: str = "items",
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        bar: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`what` names the job in each line ("import"), `unit` what is counted ("files").

        `bar` None draws a bar exactly when `stream` (default: sys.stderr) is a
        terminal; True or False forces the choice. `clock` is for tests.
        """
        self.total = total
        self.done = 0
        self._log, self._what, self._unit = log, what, unit
        self._interval_s = interval_s
        self._clock = clock
        self._started = self._last_line = clock()
        self._reported = False
        self._closed = False
        stream = sys.stderr if stream is None else stream
        self._bar = _tqdm_bar(total, what, unit, stream) if (_is_terminal(stream) if bar is None else bar) else None

    def advance(self, n: int = 1) -> None:
        """Count n more units done; maybe log a rate line (never more often than every interval_s)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if now - self._last_line >= self._interval_s:
            self._last_line = now
            self._reported = True
            self._log.info("%s", self.rate_line(now))

    def close(self) -> None:
        """Remove the bar, or log the final count if this job was long enough to have logged before."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._reported:
            now = self._clock()
            self._log.info("%s: %s %s in %s (%s %s/s)", self._what, self._count_text(), self._unit,
                           _duration(now - self._started), _rate_text(self._rate(now)), self._unit)

    def rate_line(self, now: float | None = None) -> str:
        """`import: 1200/7147 files, 310 files/s, ETA 16 s` for the count so far."""
        now = self._clock() if now is None else now
        rate = self._rate(now)
        line = f"{self._what}: {self._count_text()} {self._unit}, {_rate_text(rate)} {self._unit}/s"
        if self.total is not None and rate > 0:
            line += f", ETA {_duration(max(0, self.total - self.done) / rate)}"
        return line

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _rate(self, now: float) -> float:
        elapsed = now - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _count_text(self) -> str:
        return f"{self.done}/{self.total}" if self.total is not None else str(self.done)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _tqdm_bar(total: int | None, what: str, unit: str, stream: TextIO) -> Any:
    # Imported here: a job without a terminal never needs it.
    from tqdm import tqdm

    # leave=False: the bar disappears when done; the caller's summary line stays.
    return tqdm(total=total, desc=what, unit=f" {unit}", file=stream, leave=False, dynamic_ncols=True)


def _rate_text(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


def _duration(seconds: float) -> str:
    """19 s, 4 min 05 s, 2 h 07 min: as precise as a person wants to read it."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
