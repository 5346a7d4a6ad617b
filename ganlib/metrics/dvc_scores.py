"""metrics.json's scores as the small files DVC reads as metrics: one file per metric, a few shared keys.

DVC prints one row per metrics file and one column per key (the union over
files). metrics.json has two dozen keys, so declared as DVC's metrics it made
`dvc metrics show` one row about 380 characters wide. Here each score is its
own file under <base.paths.evaluate>/scores/, all with the same few keys, so
the table is one row per metric and a handful of columns:

    scores/fid.json           {"value": FID, "low": band low, "high": band high, "n": samples}
    scores/kid.json           {"value": KID mean, "std": KID std, "n": samples}
    scores/is.json            {"value": IS mean, "std": IS std, "n": samples}
    scores/precision.json     {"value": ..., "k": prdc_k, "n": samples}   (recall, density, coverage alike)
    scores/memorisation.json  {"value": in Inception features, "pixels": in 32x32 pixels,
                               "baseline": what fresh images score, "n": samples checked}
    scores/fid_infinity.json, scores/fd_dinov2.json  {"value": ..., "n": samples}
    scores/fid-<class>.json   a class-conditional generator's FID of one class, keys as fid.json's
                              (n: the samples generated as that class)
    scores/kid-<class>.json   its KID, keys as kid.json's

A metric not computed in this run has no file (dvc.yaml declares the folder,
and DVC reads every file in it); nor has a class with too few real images for
a number (evaluation.json says why). A key whose number is unknown (FID without
its noise band) is null; DVC shows it as "-". metrics.json stays the record
the project's own code reads (compare, publish, history); these files are
only DVC's view of it, rebuilt from it on every evaluation.
"""

from __future__ import annotations

from typing import Any, Mapping

SCORES_DIR = "scores"
# Every key a score file may hold: kept few and short, as each is a column of `dvc metrics show`.
SCORE_KEYS = ("value", "low", "high", "std", "pixels", "baseline", "k", "n")
PRDC_METRICS = ("precision", "recall", "density", "coverage")

Number = int | float | None


def dvc_score_files(metrics: Mapping[str, Any]) -> dict[str, dict[str, Number]]:
    """metrics.json's mapping -> {file name: its keys}, a file for each metric with a value, in the table's order.

    Every value is a number or None; the keys are SCORE_KEYS' (in that order within a file).
    """
    n = metrics.get("n_samples")
    rows: dict[str, dict[str, Any]] = {
        "fid": {"value": metrics.get("fid"), "low": metrics.get("fid_noise_low"),
                "high": metrics.get("fid_noise_high"), "n": n},
        "fid_infinity": {"value": metrics.get("fid_infinity"), "n": n},
        "kid": {"value": metrics.get("kid_mean"), "std": metrics.get("kid_std"), "n": n},
        "is": {"value": metrics.get("is_mean"), "std": metrics.get("is_std"), "n": n},
        "fd_dinov2": {"value": metrics.get("fd_dinov2"), "n": n},
        **{name: {"value": metrics.get(name), "k": metrics.get("prdc_k"), "n": n} for name in PRDC_METRICS},
        "memorisation": {"value": metrics.get("memorisation"), "pixels": metrics.get("memorisation_pixels"),
                         "baseline": metrics.get("memorisation_baseline"), "n": metrics.get("memorisation_n")},
    }
    per_class = metrics.get("per_class")
    for name, scores in (per_class.items() if isinstance(per_class, Mapping) else ()):
        if not isinstance(scores, Mapping):
            continue
        # "-" joins metric and class: no metric's own file name holds one, so fid-<class> never clashes with them.
        rows[f"fid-{name}"] = {"value": scores.get("fid"), "low": scores.get("fid_low"), "high": scores.get("fid_high"),
                               "n": scores.get("n_samples")}
        rows[f"kid-{name}"] = {"value": scores.get("kid"), "std": scores.get("kid_std"), "n": scores.get("n_samples")}
    return {f"{name}.json": {key: _number(row[key]) for key in SCORE_KEYS if key in row}
            for name, row in rows.items() if _number(row["value"]) is not None}


def _number(value: Any) -> Number:
    """A number as it is; anything else (a string or bool of an older metrics.json, a missing key) None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value
