"""Real images for training: resumable shuffled samplers and uint8 -> float batches.

A sampler's whole state is (epoch, position): each epoch's order is a pure
function of (seed, epoch), so a checkpoint can record exactly where in the
data a run stood, which an opaque DataLoader iterator cannot.

    EpochSampler          every image once per epoch
    ClassBalancedSampler  every class equally often (train.class_balanced): an epoch
                          holds as many images of each class as the largest class has,
                          a smaller class's images repeating in a new order each time
"""

from __future__ import annotations

import numpy as np
import torch

from ganlib.logs import Logger


class EpochSampler:
    """Indices of a fresh random permutation per epoch, handed out in order across epoch boundaries."""

    def __init__(self, count: int, seed: int) -> None:
        if count < 1:
            raise ValueError("the prepared dataset is empty; re-run preprocess with some images")
        self.count, self.seed = count, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def take(self, n: int) -> np.ndarray:
        parts, needed = [], n
        while needed:
            chunk = self._order[self.position : self.position + needed]
            parts.append(chunk)
            needed -= len(chunk)
            self.position += len(chunk)
            if self.position == self.count:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
        return np.concatenate(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.count)


class ClassBalancedSampler(EpochSampler):
    """An EpochSampler whose epochs show each class as often as the largest class."""

    def __init__(self, labels: np.ndarray, seed: int) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)] if len(labels) else []
        empty = [c for c, indices in enumerate(self.by_class) if not len(indices)]
        if empty:
            raise ValueError(f"class-balanced sampling: classes {empty} have no images")
        self.per_class = max(len(indices) for indices in self.by_class) if self.by_class else 0
        super().__init__(self.per_class * len(self.by_class), seed)

    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        drawn = [_repeated_shuffle(indices, self.per_class, rng) for indices in self.by_class]
        return rng.permutation(np.concatenate(drawn))


def _repeated_shuffle(indices: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n of `indices`: whole shuffles of them one after another, the last one cut short."""
    rounds = -(-n // len(indices))
    return np.concatenate([rng.permutation(indices) for _ in range(rounds)])[:n]


class RealImages:
    """The prepared uint8 NHWC images, served as float NCHW batches in [-1, 1] on the training device.

    On CUDA the whole uint8 array lives in GPU memory when asked and when it
    fits (a 64 px dataset of 100k images is 1.2 GB), so a batch is one gather
    on the GPU; otherwise batches are gathered on the host, pinned and copied
    asynchronously.
    """

    def __init__(self, images: np.ndarray, device: torch.device, on_device: bool, channels_last: bool, log: Logger) -> None:
        self.device, self.channels_last = device, channels_last
        self._host = images
        self._store: torch.Tensor | None = None
        if device.type == "cuda" and on_device:
            free, _ = torch.cuda.mem_get_info(device)
            if images.nbytes < free // 4:
                self._store = copy_to_device(images, device)
            else:
                log.warning(
                    "train.data_on_device: dataset (%.1f GB) is over a quarter of free GPU memory; "
                    "serving batches from host memory instead", images.nbytes / 1e9
                )

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        if self._store is not None:
            # Pinned, so the copy is truly asynchronous (from pageable memory it would wait for the GPU).
            pixels = self._store[torch.from_numpy(indices).pin_memory().to(self.device, non_blocking=True)]
        else:
            pixels = torch.from_numpy(self._host[indices])
            if self.device.type == "cuda":
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
            else:
                pixels = pixels.to(self.device)
        # NHWC viewed as NCHW is already channels_last in memory: no copy unless NCHW is wanted.
        images = pixels.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return images if self.channels_last else images.contiguous()


class RealLabels:
    """The prepared class labels, served as long tensors on the training device (a few bytes per image)."""

    def __init__(self, labels: np.ndarray, device: torch.device) -> None:
        self._labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        return self._labels[torch.from_numpy(indices).to(self._labels.device)]


def copy_to_device(images: np.ndarray, device: torch.device, chunk_images: int = 1024) -> torch.Tensor:
    """The uint8 array on `device`, read a chunk of images at a time.

    The prepared dataset is a memory map (100k images at 256 px are 20 GB):
    copying it whole would first read all of it into host memory.
    """
    store = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(images), chunk_images):
        chunk = np.ascontiguousarray(images[start : start + chunk_images])
        store[start : start + len(chunk)].copy_(torch.from_numpy(chunk))
    return store
