"""The truncation table: FID, KID and precision/recall/density/coverage per truncation psi.

    table_psis(setting)                 evaluate.truncation -> the psi rows, 1.0 first, then descending
    TruncatedGenerator                  a SeededGenerator that truncates the latents it is given (psi < 1)
    truncation_record(rows, ...)        what truncation.json holds
    truncation_table_rows(rows)         the rows as {psi, FID, ...} strings for render_table

The truncation trick (ganlib.models.truncation: z -> psi z, toward the prior's
mean) trades diversity for fidelity: as psi falls, precision and density
usually rise while recall and coverage fall, and FID first improves a little,
then worsens. The table shows that trade-off for one generator. Row i of
every psi is made from the same latent, fixed_latents(n_samples, z_dim,
evaluate.seed)[i], scaled by psi: the psi = 1.0 row is the main evaluation,
whose numbers are metrics.json's. Each psi < 1 costs another n_samples
images through the extractor; the reference side is shared.

truncation.json (in base.paths.evaluate, beside metrics.json; a DVC out):

    {
      "format": "scenegan-truncation/1",
      "n_samples": 1000, "n_reference": 1000, "seed": 12345, "z_dim": 100,
      "extractor": "fid-inception-v3-tf2015", "prdc_k": 5,     # null when prdc was not computed
      "latent": "psi * ganlib.models.sampling.fixed_latents(n_samples, z_dim, seed)[i]",
      "rows": [                               # psi 1.0 first, then descending
        {"psi": 1.0, "fid": 61.2, "kid_mean": 0.051, "kid_std": 0.003,
         "precision": 0.61, "recall": 0.32, "density": 0.83, "coverage": 0.55},
        {"psi": 0.8, ...},
        ...
      ]
    }

A value is null when its metric is not in evaluate.metrics (fid, kid, prdc),
or could not be computed (the notes in evaluation.json, beside metrics.json, say why).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn as nn

from ganlib.formatting import significant
from ganlib.metrics.sources import SampleLabels, SeededGenerator
from ganlib.models.truncation import check_truncation, truncate_latents
from ganlib.metrics.report import TRUNCATION_FILE, TRUNCATION_FORMAT  # noqa: F401 (named for readers there)

_number = partial(significant, digits=4, scientific_from=1e5)


def table_psis(setting: Sequence[float]) -> list[float]:
    """The table's psi values: 1.0 (the main evaluation) first, then the others once each, largest first."""
    others = {check_truncation(psi, "evaluate.truncation") for psi in setting} - {1.0}
    return [1.0, *sorted(others, reverse=True)]


class TruncatedGenerator(SeededGenerator):
    """SeededGenerator that makes image i from psi * latent i (the latents features.generator_features draws)."""

    def __init__(self, generator: nn.Module, z_dim: int, resolution: int, psi: float,
                 sample_labels: SampleLabels | None = None):
        super().__init__(generator, z_dim, resolution, sample_labels)
        self.psi = check_truncation(psi, "evaluate.truncation")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(truncate_latents(z, self.psi), labels)


@dataclass(frozen=True)
class TruncationRow:
    psi: float
    fid: float | None
    kid_mean: float | None
    kid_std: float | None
    precision: float | None
    recall: float | None
    density: float | None
    coverage: float | None


def truncation_record(
    rows: Sequence[TruncationRow], n_samples: int, n_reference: int, seed: int, z_dim: int, extractor: str,
    prdc_k: int | None,
) -> dict[str, Any]:
    """truncation.json's content (format: the module docstring)."""
    return {
        "format": TRUNCATION_FORMAT,
        "n_samples": n_samples,
        "n_reference": n_reference,
        "seed": seed,
        "z_dim": z_dim,
        "extractor": extractor,
        "prdc_k": prdc_k,
        "latent": "psi * ganlib.models.sampling.fixed_latents(n_samples, z_dim, seed)[i]",
        "rows": [asdict(row) for row in rows],
    }


def truncation_table_rows(rows: Sequence[TruncationRow]) -> list[dict[str, str]]:
    """One {psi, FID, KID, precision, recall, density, coverage} row of text per psi (n/a: not computed)."""
    def cell(value: float | None) -> str:
        return "n/a" if value is None else _number(value)

    return [
        {
            "psi": str(row.psi),
            "FID": cell(row.fid),
            "KID": cell(row.kid_mean),
            "precision": cell(row.precision),
            "recall": cell(row.recall),
            "density": cell(row.density),
            "coverage": cell(row.coverage),
        }
        for row in rows
    ]
