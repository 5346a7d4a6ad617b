"""When two FIDs may be compared: the same network, the same sample counts, the same reference images.

FID depends on more than the generator: another feature extractor gives
numbers on another scale, fewer samples bias it upwards (1000 samples can add
several points over 50 000), and another reference dataset moves the target.
The better_fid gate therefore compares this run's FID with the published one
only when the settings below, as evaluate wrote them to metrics.json and the
gallery manifest recorded them, are equal; otherwise it publishes and says
which setting differs.
"""

from __future__ import annotations

from typing import Any, Mapping

# metrics.json keys (ganlib.metrics.report.EvaluationReport) that make two FIDs comparable.
FID_SETTINGS = ("extractor", "n_samples", "n_reference", "dataset_sha256")
MANIFEST_KEY = "fid_settings"


def fid_settings(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The comparability settings of an evaluation's metrics.json (None: not evaluated)."""
    if metrics is None:
        return None
    return {key: metrics.get(key) for key in FID_SETTINGS}


def recorded_fid_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a gallery manifest recorded for its FID.

    Manifests written before MANIFEST_KEY existed still hold the whole
    metrics.json, which carries the same keys.
    """
    recorded = manifest.get(MANIFEST_KEY) or manifest.get("metrics") or {}
    return {key: recorded.get(key) for key in FID_SETTINGS} if isinstance(recorded, dict) else dict.fromkeys(FID_SETTINGS)


def fid_setting_differences(current: Mapping[str, Any], published: Mapping[str, Any]) -> list[str]:
    """'n_samples 1000 vs 5000' (this run's value first) for every setting that differs or is unknown."""
    return [
        f"{key} {_shown(current.get(key))} vs {_shown(published.get(key))}"
        for key in FID_SETTINGS
        if current.get(key) is None or current.get(key) != published.get(key)
    ]


def _shown(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, str) and len(value) == 64:  # a sha256: its first 12 digits are enough to tell
        return value[:12]
    return str(value)
