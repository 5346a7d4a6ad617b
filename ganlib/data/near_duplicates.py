"""Perceptual near-duplicates: re-encoded, resized or lightly edited copies of the same photo.

Byte-identical copies are caught by a file hash; a JPEG re-encode or a
resized copy is not, yet it inflates a dataset and, found in two dataset
versions, makes them look more alike than they are (drift FID). Each image
gets a 64-bit perceptual hash (imagehash's pHash: the signs of the lowest
8x8 DCT coefficients of a 32x32 grey thumbnail, against their median),
computed on the decoded image at the prepared resolution, so the source's
size and encoding do not matter. Two images whose hashes differ in at most
`max_distance` bits are near-duplicates.

Measured here on 64 px images: a JPEG re-encode at quality 70 or a 90%
resize moves the hash by at most 2 bits; the closest pair among 600 of the
procedural scenes differs by 10, and crops of different photos by more than
8 unless they overlap heavily. Hence the default of 4.

Search uses the pigeonhole principle: split the 64 bits into max_distance + 1
bands; two hashes within max_distance bits agree exactly on at least one
band, so only images sharing a band value are compared.

That is fast only while the bands are wide. With d + 1 bands of 64 / (d + 1)
bits, two unrelated hashes share some band with probability about
(d + 1) * 2^(-64 / (d + 1)): 0.07% at d = 4, 3% at d = 7 (one byte a band),
6.5% at d = 8, 20% at d = 10, and at d = 15 (4-bit bands) every pair is
compared: the search is quadratic again. Measured here on uniformly random
hashes (real pHashes, balanced but correlated, collide more): 20k images take
0.07 s at d = 4, 0.5 s at 7, 1.0 s at 8, 2.9 s at 10; 100k take 1.1 s at 4 and
18 s at 7, and the time doubles with each further bit. So
preprocess.near_duplicate_distance stops at 7 (ganlib/config.py,
NEAR_DUPLICATE_MAX_DISTANCE), which is also below the 10 bits that separated
the closest distinct scenes: a larger distance would merge different photos.
"""

from __future__ import annotations

from typing import Sequence

import imagehash
import numpy as np
from PIL import Image

HASH_BITS = 64
METHOD = f"pHash ({HASH_BITS}-bit DCT hash of a 32x32 grey thumbnail, imagehash {imagehash.__version__})"


def perceptual_hash(image: np.ndarray) -> int:
    """The 64-bit pHash of a uint8 [H, W, 3] image, as an int."""
    bits = imagehash.phash(Image.fromarray(image)).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Hashes of the images kept so far, each under an id; finds the closest within max_distance bits."""

    def __init__(self, max_distance: int) -> None:
        if not 0 <= max_distance < HASH_BITS:
            raise ValueError(f"max_distance must be in [0, {HASH_BITS - 1}], got {max_distance}")
        self.max_distance = max_distance
        self._hashes: list[int] = []
        self._ids: list[str] = []
        self._bands = _bands(max_distance + 1)
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._bands]  # per band: band value -> positions

    def __len__(self) -> int:
        return len(self._hashes)

    def closest(self, value: int) -> tuple[str, int] | None:
        """(id, distance) of the closest indexed hash within max_distance; the earliest added on a tie."""
        best: tuple[int, int] | None = None  # (distance, position)
        for (shift, mask), bucket in zip(self._bands, self._buckets):
            for position in bucket.get((value >> shift) & mask, ()):
                distance = hamming_distance(value, self._hashes[position])
                if distance <= self.max_distance and (best is None or (distance, position) < best):
                    best = (distance, position)
        return None if best is None else (self._ids[best[1]], best[0])

    def add(self, value: int, image_id: str) -> None:
        position = len(self._hashes)
        self._hashes.append(value)
        self._ids.append(image_id)
        for (shift, mask), bucket in zip(self._bands, self._buckets):
            bucket.setdefault((value >> shift) & mask, []).append(position)


class NearDuplicateGroups:
    """Images grouped with the first image (in dataset order) they look like."""

    def __init__(self, max_distance: int) -> None:
        self.groups: dict[str, list[tuple[str, int]]] = {}  # first -> [(copy, distance)]
        self._index = NearDuplicateIndex(max_distance)

    def check(self, image_id: str, value: int) -> tuple[str, int] | None:
        """The (first image, distance) `image_id` is a near-duplicate of, recorded in its group; else None.

        An image that matches nothing starts a group of its own (empty until a copy arrives).
        Copies are compared with the first image of each group, not with each other.
        """
        match = self._index.closest(value)
        if match is None:
            self._index.add(value, image_id)
            return None
        self.groups.setdefault(match[0], []).append((image_id, match[1]))
        return match

    def report(self) -> list[dict]:
        """Non-empty groups for qa_report.json, in the order their first copy was found."""
        return [
            {"kept": first, "copies": [{"path": path, "distance": distance} for path, distance in copies]}
            for first, copies in self.groups.items()
        ]

    @property
    def copies(self) -> int:
        return sum(len(copies) for copies in self.groups.values())


def dataset_hashes(images: np.ndarray) -> list[int]:
    """pHash of every image of a prepared uint8 [N, R, R, 3] array (read one image at a time)."""
    return [perceptual_hash(np.asarray(image)) for image in images]


def count_near_duplicates_between(earlier: Sequence[int], later: Sequence[int], max_distance: int) -> int:
    """How many of `later`'s hashes have one of `earlier`'s within max_distance bits."""
    index = NearDuplicateIndex(max_distance)
    for position, value in enumerate(earlier):
        index.add(value, str(position))
    return sum(index.closest(value) is not None for value in later)


def _bands(count: int) -> list[tuple[int, int]]:
    """(shift, mask) of `count` disjoint bit ranges covering the 64 bits, as even as possible."""
    edges = np.linspace(0, HASH_BITS, count + 1).round().astype(int)
    return [(int(lo), (1 << int(hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:])]
