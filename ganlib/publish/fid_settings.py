"""When two FIDs may be compared: the same network and precision, sample counts, latents and reference images.

FID depends on more than the generator: another feature extractor (or the
same one in bf16) gives numbers on another scale, fewer samples bias it
upwards (1000 samples can add several points over 50 000), other latents
(evaluate.seed) draw another sample of the generator, and another reference
dataset moves the target. The better_fid gate therefore takes the published
FID as it was recorded only when the settings below, as evaluate wrote them
to metrics.json and the gallery manifest recorded them, are equal; otherwise
it re-scores the published generator under this run's settings
(ganlib/publish/rescore.py).
"""

from __future__ import annotations

from typing import Any, Mapping

# metrics.json keys (ganlib.metrics.report.EvaluationReport) that make two FIDs comparable.
# `extractor` is ExtractorSpec.identity(): the network plus its precision when not fp32
# ("fid-inception-v3-tf2015@bf16"), so the precision is compared through it.
FID_SETTINGS = ("extractor", "n_samples", "n_reference", "dataset_sha256", "seed")
MANIFEST_KEY = "fid_settings"


def fid_settings(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The comparability settings of an evaluation's metrics.json (None: not evaluated)."""
    if metrics is None:
        return None
    return {key: metrics.get(key) for key in FID_SETTINGS}


def recorded_fid_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a gallery manifest recorded for its FID.

    A key missing from MANIFEST_KEY (manifests written before it existed, or
    before `seed` joined it) is read from the whole metrics.json the manifest
    also holds, which carries the same keys.
    """
    recorded = _mapping(manifest.get(MANIFEST_KEY))
    metrics = _mapping(manifest.get("metrics"))
    return {key: recorded[key] if key in recorded else metrics.get(key) for key in FID_SETTINGS}


def fid_setting_differences(current: Mapping[str, Any], published: Mapping[str, Any]) -> list[str]:
    """'n_samples 1000 vs 5000' (this run's value first) for every setting that differs or is unknown."""
    return [
        f"{key} {shown_setting(current.get(key))} vs {shown_setting(published.get(key))}"
        for key in FID_SETTINGS
        if current.get(key) is None or current.get(key) != published.get(key)
    ]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def shown_setting(value: Any) -> str:
    """A setting's value as the gate's texts show it."""
    if value is None:
        return "unknown"
    if isinstance(value, str) and len(value) == 64:  # a sha256: its first 12 digits are enough to tell
        return value[:12]
    return str(value)
