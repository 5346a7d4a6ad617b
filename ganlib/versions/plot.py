"""compare.png: each metric per dataset version, one panel per metric.

Drawn on matplotlib's Agg canvas directly (no pyplot): no display needed and
no process-wide backend switch inside a Prefect worker.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ganlib.io.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from ganlib.versions.compare import VersionRow

# Plottable columns: column -> (title, its error bars: a std column or a (low, high) band, how to read it).
METRIC_COLUMNS = {
    "fid": ("FID", ("fid_noise_low", "fid_noise_high"),
            "lower is better; bars where recorded: 95% sampling-noise band at that n, reference fixed, "
            "not an interval on the true FID"),
    "kid_mean": ("KID", "kid_std", "lower is better"),
    "is_mean": ("IS", "is_std", "higher is better"),
    "precision": ("precision", None, "share of samples inside the real data's k-NN balls; higher is better"),
    "recall": ("recall", None, "share of real images inside the samples' k-NN balls; higher is better"),
    "density": ("density", None, "about 1 for samples spread like the real data"),
    "coverage": ("coverage", None, "share of real images with a sample nearby; higher is better"),
    "memorisation": ("memorisation", None, "share of samples suspiciously close to a training image; lower is better"),
    "drift_fid_from_previous": ("drift FID", None, "real vs real, from the previous row"),
    "drift_kid_from_previous": ("drift KID", None, "real vs real, from the previous row"),
}


# Scores of generated samples: comparable only between rows evaluated alike (compare.not_comparable_reasons).
# Drift is real vs real data and does not depend on the training run.
GENERATED_METRICS = frozenset({"fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "memorisation"})


def plot_metrics_png(rows: Sequence["VersionRow"], metrics: Sequence[str], path: Path) -> Path:
    """One panel per metric column, x = version (label and dataset md5), gaps where a value is missing.

    The FID/KID/IS line breaks between rows that are not comparable (compare.comparable_segments).
    """
    from ganlib.versions.compare import comparable_segments  # compare imports this module lazily; no cycle at import

    unknown = [m for m in metrics if m not in METRIC_COLUMNS]
    if unknown or not metrics:
        raise ValueError(f"cannot plot {unknown or 'no metrics'}; choose from {sorted(METRIC_COLUMNS)}")
    width = max(6.0, 1.1 * len(rows) + 2.0)
    figure = Figure(figsize=(width, 2.6 * len(metrics) + 0.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    x = list(range(len(rows)))
    for ax, metric in zip(axes, metrics):
        title, spread_column, direction = METRIC_COLUMNS[metric]
        values = [_nan(getattr(row, metric)) for row in rows]
        ax.set_title(f"{title} ({direction})", fontsize=10, loc="left", wrap=True)
        ax.grid(True, alpha=0.3)
        ax.margins(y=0.2)  # room for the value labels above the points
        if all(math.isnan(v) for v in values):
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="grey")
            continue
        # Generated-sample scores of rows that are not comparable (other kimg, n_samples, extractor,
        # n_reference) are drawn as separate segments: a line between them would read as a trend.
        segments = comparable_segments(rows) if metric in GENERATED_METRICS else [x]
        for segment in segments:
            ax.plot(segment, [values[i] for i in segment], marker="o", color="tab:blue")
        below, above = _error_bars(rows, values, spread_column)
        if any(b > 0 for b in below) or any(a > 0 for a in above):
            ax.errorbar(x, values, yerr=[below, above], fmt="none", ecolor="tab:blue", capsize=3)
        for xi, value in zip(x, values):
            if not math.isnan(value):
                ax.annotate(f"{value:.4g}", (xi, value), textcoords="offset points", xytext=(6, 4), ha="left", fontsize=8)
    labels = [f"{row.label}\n{row.data_md5[:8] if row.data_md5 else 'untracked'}" for row in rows]
    axes[-1].set_xticks(x, labels, rotation=30 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center", fontsize=8)
    axes[-1].set_xlabel("dataset version (label, data md5)")
    if rows:
        axes[-1].set_xlim(-0.5, len(rows) - 0.5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def _error_bars(
    rows: Sequence["VersionRow"], values: Sequence[float], spread: str | tuple[str, str] | None
) -> tuple[list[float], list[float]]:
    """How far each bar reaches below and above its point: +-std for a std column, to low/high for a band; 0: none."""
    if spread is None:
        return [0.0] * len(rows), [0.0] * len(rows)
    if isinstance(spread, str):
        stds = [_nan(getattr(row, spread)) for row in rows]
        reach = [0.0 if math.isnan(s) else s for s in stds]
        return reach, reach
    low_column, high_column = spread
    below, above = [], []
    for row, value in zip(rows, values):
        low, high = _nan(getattr(row, low_column)), _nan(getattr(row, high_column))
        known = not (math.isnan(low) or math.isnan(high) or math.isnan(value))
        below.append(max(0.0, value - low) if known else 0.0)
        above.append(max(0.0, high - value) if known else 0.0)
    return below, above


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
