"""Nearest neighbours between feature rows, in tiles, so memory stays bounded whatever the row counts.

    neighbours_within(points, k, device)                     each row's k nearest other rows (itself excluded)
    cross_neighbours(generated, reference, ..., device)      generated rows against reference rows, one pass
    pair_distances(a, b, b_rows)                             exact distances of chosen pairs (float64)

Precision/recall/density/coverage (prdc.py) and the memorisation check
(memorisation.py) are all functions of two sets of Euclidean distances: each
set's own k-NN radii, and the generated x reference distance matrix. At 10k x
10k rows that matrix is 400 MB of float32 (at 50k x 50k, 10 GB), so it is never
held: it is computed tile by tile (at most TILE_ROWS x TILE_COLUMNS distances)
and each tile is folded into per-row results (running minima, counts, flags)
before the next one. Rows go to `device` one tile at a time, in float32, so the
inputs may be uint8 pixels or CPU features of any size.

Distances are torch.cdist's (as torch-fidelity's precision/recall), after
subtracting one common centre (the reference rows' mean) from both sets: a
Euclidean distance does not change under a shift, and cdist's |a|^2 + |b|^2 -
2 a.b loses digits when the rows' norms are large against their distances
(Inception pool features sit far from the origin). On a GPU, TF32 matmuls
(10-bit mantissas, which training may switch on) are off while distances are
computed, as for feature extraction. What is left is ~1e-3 near
0 (float32): a copy's distance comes out as 0.002, not 0. pair_distances
recomputes the distances of the pairs found, directly and in float64, where
the distance itself is reported (the memorisation check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ganlib.metrics.exact_convolutions import exact_cuda_convolutions

# A tile holds at most TILE_ROWS x TILE_COLUMNS float32 distances (64 MiB), plus cdist's own temporaries.
TILE_ROWS = 2048
TILE_COLUMNS = 8192


@dataclass(frozen=True)
class Neighbours:
    """Each row's k nearest other rows of the same set, nearest first (a row is never its own neighbour)."""

    distances: torch.Tensor   # float32 [N, k], ascending along each row
    indices: torch.Tensor     # int64 [N, k], row numbers in the same set

    def radii(self, k: int) -> torch.Tensor:
        """The distance to each row's k-th nearest other row: the radius of its k-NN ball."""
        return self.distances[:, k - 1]


@dataclass(frozen=True)
class CrossNeighbours:
    """Generated rows (M) against reference rows (N), from one pass over their distances.

    The ball counts and flags are None when the radii they need were not given.
    """

    nearest_reference_distance: torch.Tensor      # float32 [M]: each generated row's nearest reference row
    nearest_reference_index: torch.Tensor         # int64 [M]: which reference row that is
    nearest_generated_distance: torch.Tensor      # float32 [N]: each reference row's nearest generated row
    reference_balls_holding: torch.Tensor | None  # int64 [M]: how many reference k-NN balls hold each generated row
    in_generated_ball: torch.Tensor | None        # bool [N]: whether some generated k-NN ball holds the reference row


def centre_of(points: torch.Tensor) -> torch.Tensor:
    """The mean row, in float64 summed tile by tile (a float32 sum of 50k rows loses digits), as float32."""
    total = torch.zeros(points.shape[1], dtype=torch.float64)
    for start in range(0, len(points), TILE_COLUMNS):
        total += points[start:start + TILE_COLUMNS].to(torch.float64).sum(dim=0)
    return (total / max(1, len(points))).to(torch.float32)


def neighbours_within(
    points: torch.Tensor, k: int, device: torch.device, centre: torch.Tensor | None = None
) -> Neighbours:
    """The k nearest other rows of every row of `points` [N, D] (needs N > k), on the CPU."""
    if not 1 <= k < len(points):
        raise ValueError(f"{k} nearest neighbours need more than {k} rows, got {len(points)}")
    with exact_cuda_convolutions(device):
        return _nearest_within(points, k, device, centre_of(points) if centre is None else centre)


def _nearest_within(points: torch.Tensor, k: int, device: torch.device, centre: torch.Tensor) -> Neighbours:
    best_distances = torch.empty(len(points), k)
    best_indices = torch.empty(len(points), k, dtype=torch.long)
    for rows, row_block in _blocks(points, TILE_ROWS, device, centre):
        running_d = torch.full((len(row_block), k), float("inf"), device=device)
        running_i = torch.zeros((len(row_block), k), dtype=torch.long, device=device)
        for columns, column_block in _blocks(points, TILE_COLUMNS, device, centre):
            tile = torch.cdist(row_block, column_block)
            _exclude_self(tile, rows, columns)
            found_d, found_i = tile.topk(min(k, tile.shape[1]), dim=1, largest=False)
            merged_d = torch.cat([running_d, found_d], dim=1)
            merged_i = torch.cat([running_i, found_i + columns.start], dim=1)
            running_d, order = merged_d.topk(k, dim=1, largest=False)   # topk returns them sorted
            running_i = merged_i.gather(1, order)
        best_distances[rows] = running_d.cpu()
        best_indices[rows] = running_i.cpu()
    return Neighbours(best_distances, best_indices)


def cross_neighbours(
    generated: torch.Tensor,
    reference: torch.Tensor,
    device: torch.device,
    reference_radii: torch.Tensor | None = None,
    generated_radii: torch.Tensor | None = None,
    centre: torch.Tensor | None = None,
) -> CrossNeighbours:
    """Nearest neighbours across the sets and, given the radii, which k-NN balls hold which rows.

    A row counts as inside a ball when its distance is at most the ball's
    radius (<=, as torch-fidelity's precision/recall).
    """
    with exact_cuda_convolutions(device):
        return _cross(generated, reference, device, reference_radii, generated_radii,
                      centre_of(reference) if centre is None else centre)


def _cross(
    generated: torch.Tensor, reference: torch.Tensor, device: torch.device, reference_radii: torch.Tensor | None,
    generated_radii: torch.Tensor | None, centre: torch.Tensor,
) -> CrossNeighbours:
    m, n = len(generated), len(reference)
    nearest_d = torch.full((m,), float("inf"))
    nearest_i = torch.zeros(m, dtype=torch.long)
    nearest_generated = torch.full((n,), float("inf"), device=device)
    holding = torch.zeros(m, dtype=torch.long) if reference_radii is not None else None
    in_ball = torch.zeros(n, dtype=torch.bool, device=device) if generated_radii is not None else None
    reference_radii = None if reference_radii is None else reference_radii.to(device)
    generated_radii = None if generated_radii is None else generated_radii.to(device)
    for rows, row_block in _blocks(generated, TILE_ROWS, device, centre):
        best_d = torch.full((len(row_block),), float("inf"), device=device)
        best_i = torch.zeros(len(row_block), dtype=torch.long, device=device)
        counts = torch.zeros(len(row_block), dtype=torch.long, device=device)
        for columns, column_block in _blocks(reference, TILE_COLUMNS, device, centre):
            tile = torch.cdist(row_block, column_block)          # [generated rows, reference columns]
            tile_d, tile_i = tile.min(dim=1)
            closer = tile_d < best_d                              # strict: the first of equals wins, as argmin
            best_d = torch.where(closer, tile_d, best_d)
            best_i = torch.where(closer, tile_i + columns.start, best_i)
            nearest_generated[columns] = torch.minimum(nearest_generated[columns], tile.min(dim=0).values)
            if reference_radii is not None:
                counts += (tile <= reference_radii[columns][None, :]).sum(dim=1)
            if generated_radii is not None:
                in_ball[columns] |= (tile <= generated_radii[rows][:, None]).any(dim=0)
        nearest_d[rows], nearest_i[rows] = best_d.cpu(), best_i.cpu()
        if holding is not None:
            holding[rows] = counts.cpu()
    return CrossNeighbours(
        nearest_d, nearest_i, nearest_generated.cpu(), holding, None if in_ball is None else in_ball.cpu()
    )


def pair_distances(a: torch.Tensor, b: torch.Tensor, b_rows: torch.Tensor) -> torch.Tensor:
    """||a[i] - b[b_rows[i]]|| for every row i of `a`, as (a - b) in float64 on the CPU: exact, 0 for a copy."""
    distances = torch.empty(len(a), dtype=torch.float64)
    for start in range(0, len(a), TILE_ROWS):
        rows = slice(start, min(start + TILE_ROWS, len(a)))
        difference = a[rows].to(torch.float64) - b[b_rows[rows]].to(torch.float64)
        distances[rows] = difference.norm(dim=1)
    return distances


def _blocks(
    points: torch.Tensor, size: int, device: torch.device, centre: torch.Tensor
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Consecutive row blocks of `points` as centred float32 on `device`, with the rows they are."""
    centre = centre.to(device)
    for start in range(0, len(points), size):
        rows = slice(start, min(start + size, len(points)))
        yield rows, points[rows].to(device=device, dtype=torch.float32) - centre


def _exclude_self(tile: torch.Tensor, rows: slice, columns: slice) -> None:
    """Set the distance of each row to itself (where the tile holds it) to +inf, in place."""
    first, last = max(rows.start, columns.start), min(rows.stop, columns.stop)
    if first >= last:
        return
    own = torch.arange(first, last, device=tile.device)
    tile[own - rows.start, own - columns.start] = float("inf")
