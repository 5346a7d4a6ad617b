"""Numbers as text for people: the one place tables, pages, summaries and comparisons round them.

    significant(0.012345, 4)      -> "0.01235"
    fixed(218.8123, 1)            -> "218.8"
    plus_minus(0.01, 0.002, ...)  -> "0.01 ± 0.002"
    fid_noise_text(...)           -> "FID 218.8, sampling noise [214.1, 223.9] (95% band over 200 ...)"

Each caller keeps its own precision (a page shows 3 decimals, a CLI line 4
significant digits); what is shared is how a missing value, a count and a
non-number read, and the one wording of FID's sampling-noise band.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable

MISSING = "n/a"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def significant(value: Any, digits: int, missing: str = MISSING, scientific_from: float = math.inf) -> str:
    """A float to `digits` significant digits ("%g"); from |value| >= scientific_from always in exponent form.

    Counts (ints) and text read as they are: rounding 12345 images to
    "1.234e+04" would say less than the number does.
    """
    if value is None:
        return missing
    if not isinstance(value, float):
        return str(value)
    if math.isfinite(value) and abs(value) >= scientific_from:
        return f"{value:.{max(digits - 2, 0)}e}"
    return f"{value:.{digits}g}"


def fixed(value: Any, decimals: int, missing: str = MISSING) -> str:
    """A finite number with `decimals` digits after the point; anything else as it is."""
    if value is None:
        return missing
    if _is_number(value) and math.isfinite(value):
        return f"{value:.{decimals}f}"
    return str(value)


def plus_minus(mean: Any, spread: Any, show: Callable[[Any], str], missing: str = MISSING) -> str:
    """"mean ± spread", each through `show`; the mean alone when there is no spread."""
    if mean is None:
        return missing
    return show(mean) if spread is None else f"{show(mean)} ± {show(spread)}"


# --------------------------------------------------------------------------- FID's sampling-noise band
#
# The band (ganlib.metrics.scores.fid_noise_band) is the sampling noise of FID at
# n generated samples, the reference held fixed: not a confidence interval on
# the true FID. Every place a person reads it uses these words.


def fid_noise_band_text(low: Any, high: Any, show: Callable[[Any], str]) -> str:
    """The band itself, as it follows an FID: "[214.1, 223.9]"."""
    return f"[{show(low)}, {show(high)}]"


def fid_noise_description(resamples: Any, n: Any, level: float = 0.95) -> str:
    """What the band is, in words: "95% band over 200 bootstrap resamples of the 1000 generated samples; reference fixed"."""
    over = f"{resamples} bootstrap resamples" if resamples is not None else "bootstrap resamples"
    of = f"the {n} generated samples" if n is not None else "the generated samples"
    return f"{level:.0%} band over {over} of {of}; reference fixed"


def fid_noise_text(
    fid: Any, low: Any, high: Any, resamples: Any, n: Any, show: Callable[[Any], str], level: float = 0.95
) -> str:
    """"FID 218.8, sampling noise [214.1, 223.9] (95% band over 200 bootstrap resamples of the 1000 generated
    samples; reference fixed)"; just "FID 218.8" when there is no band."""
    if low is None or high is None:
        return f"FID {show(fid)}"
    return (f"FID {show(fid)}, sampling noise {fid_noise_band_text(low, high, show)} "
            f"({fid_noise_description(resamples, n, level)})")


def iso_utc(moment: datetime | float) -> str:
    """A time (an aware datetime, or seconds since the epoch) as `2026-12-02T15:33:02Z`."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
