"""Precision, recall, density and coverage of generated features against real ones.

    prdc_from_features(generated, reference, k, device)   the four numbers (or why not), from features
    reference_side(reference, k, device)                  the reference's own k-NN, found once
    compare_with_reference(generated, side, k, device)    the four numbers, and the cross pass memorisation reads

Every real (reference) feature row X_i has a k-NN ball: the sphere around it
whose radius r_i is the distance to its k-th nearest other real row; every
generated row Y_j has one likewise (radius s_j, among the generated rows).

- precision (Kynkäänniemi et al. 2019): the fraction of generated rows inside
  at least one real ball, ||Y_j - X_i|| <= r_i for some i. "How many samples
  look real."
- recall (same paper): the fraction of real rows inside at least one generated
  ball, ||X_i - Y_j|| <= s_j for some j. "How much of the real data the
  generator reaches."
- density (Naeem et al. 2020): (1 / (k M)) sum_j #{i : ||Y_j - X_i|| <= r_i}:
  how many real balls hold a sample, on average, over k. About 1 when the
  generated rows are distributed as the real ones; above 1 when samples crowd
  into dense real regions; unlike precision it is not fooled by a few real
  outliers whose large balls swallow many samples.
- coverage (same paper): the fraction of real rows whose own ball holds at
  least one generated row, min_j ||X_i - Y_j|| <= r_i. Robust to generated
  outliers, unlike recall, whose generated balls they inflate.

Precision and recall are torch-fidelity's definition (its prc metric: the
same radii, the same <=), so they match `prc_features_to_metric` on the same
features and k (tests/test_prdc.py). Density and coverage follow Naeem et al.,
with <= where their code has <: it differs only on exact ties. Naeem et al.
recommend k = 5 (evaluate.prdc_k), with which identical distributions score
about 1 on all four. The numbers depend on k and on the sample counts, so
compare them only at equal prdc_k, n_samples and n_reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ganlib.metrics.neighbours import CrossNeighbours, Neighbours, centre_of, cross_neighbours, neighbours_within


@dataclass(frozen=True)
class Prdc:
    precision: float | None
    recall: float | None
    density: float | None
    coverage: float | None
    k: int
    note: str | None       # why the numbers are None, in words


def prdc_unavailable_reason(n_generated: int, n_reference: int, k: int) -> str | None:
    """Why the k-NN balls cannot be formed (None: they can): each side needs more than k rows."""
    if min(n_generated, n_reference) > k:
        return None
    return (
        f"precision/recall/density/coverage unavailable: a k-NN radius needs more than k = {k} samples per side "
        f"(evaluate.prdc_k), got {n_generated} generated and {n_reference} real; lower evaluate.prdc_k or raise "
        "evaluate.n_samples / evaluate.n_reference"
    )


def prdc_from_neighbours(reference_nn: Neighbours, generated_nn: Neighbours, cross: CrossNeighbours, k: int) -> Prdc:
    """The four numbers from the sets' own k-NN and a cross pass made with both sets' k-th radii."""
    if cross.reference_balls_holding is None or cross.in_generated_ball is None:
        raise ValueError("prdc_from_neighbours needs a cross pass made with both sets' radii")
    radii = reference_nn.radii(k)
    return Prdc(
        precision=float((cross.reference_balls_holding > 0).double().mean()),
        recall=float(cross.in_generated_ball.double().mean()),
        density=float(cross.reference_balls_holding.double().sum() / (k * len(cross.reference_balls_holding))),
        coverage=float((cross.nearest_generated_distance <= radii).double().mean()),
        k=k,
        note=None,
    )


@dataclass(frozen=True)
class ReferenceSide:
    """The reference rows, their centre and each row's k nearest other rows: found once, reused for every
    generated set scored against them (each truncation psi, the memorisation check)."""

    rows: torch.Tensor
    centre: torch.Tensor
    neighbours: Neighbours


def reference_side(rows: torch.Tensor, k: int, device: torch.device) -> ReferenceSide:
    """`rows`' k nearest other rows (needs more than k rows)."""
    centre = centre_of(rows)
    return ReferenceSide(rows, centre, neighbours_within(rows, k, device, centre))


def compare_with_reference(
    generated: torch.Tensor, side: ReferenceSide, k: int | None, device: torch.device
) -> tuple[Prdc | None, CrossNeighbours]:
    """Precision/recall/density/coverage with k (None: not asked for) and the cross pass they came from.

    The cross pass (each sample's nearest reference row) is what the
    memorisation check reads, so it is made once for both.
    """
    reason = None if k is None else prdc_unavailable_reason(len(generated), len(side.rows), k)
    if k is None or reason:
        cross = cross_neighbours(generated, side.rows, device, centre=side.centre)
        return (None if k is None else Prdc(None, None, None, None, k, reason)), cross
    if side.neighbours.distances.shape[1] < k:
        raise ValueError(f"the reference side holds {side.neighbours.distances.shape[1]} neighbours per row, not k = {k}")
    generated_nn = neighbours_within(generated, k, device, side.centre)
    cross = cross_neighbours(
        generated, side.rows, device, side.neighbours.radii(k), generated_nn.radii(k), side.centre
    )
    return prdc_from_neighbours(side.neighbours, generated_nn, cross, k), cross


def prdc_from_features(generated: torch.Tensor, reference: torch.Tensor, k: int, device: torch.device) -> Prdc:
    """Precision, recall, density, coverage with k-NN balls of k (None, and a note, when a side has <= k rows)."""
    reason = prdc_unavailable_reason(len(generated), len(reference), k)
    if reason:
        return Prdc(None, None, None, None, k, reason)
    prdc, _ = compare_with_reference(generated, reference_side(reference, k, device), k, device)
    return prdc
