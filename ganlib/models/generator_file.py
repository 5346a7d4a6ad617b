"""generator.pt: the trained (EMA) generator, self-describing and free of pickled code.

The file holds only tensors and primitives, so it loads with
torch.load(weights_only=True); the network is rebuilt from the registry
with the recorded arch name and kwargs. Evaluation and publishing call
`load_generator` and nothing else.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_bytes
from ganlib.models.registry import rebuild_generator

FORMAT = "scenegan-generator/1"


class GeneratorFileError(UserFacingError, RuntimeError):
    """generator.pt is missing, unreadable or of another format."""


@dataclass(frozen=True)
class GeneratorInfo:
    arch: str
    z_dim: int
    resolution: int
    kimg: float
    data_md5: str | None
    dataset_sha256: str
    params_fingerprint: str
    classes: tuple[str, ...] = ()  # a class-conditional generator's class names, in label order; () unconditional


def save_generator(path: Path, generator: nn.Module, info: GeneratorInfo, build: dict[str, Any]) -> Path:
    """Write the generator atomically; `build` is registry.generator_kwargs(...) for `info.arch`."""
    record = {
        "format": FORMAT,
        "arch": info.arch,
        "build": dict(build),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
        "z_dim": info.z_dim,
        "resolution": info.resolution,
        "kimg": info.kimg,
        "data_md5": info.data_md5,
        "dataset_sha256": info.dataset_sha256,
        "params_fingerprint": info.params_fingerprint,
        "classes": list(info.classes),
    }
    if len(info.classes) != int(build.get("n_classes", 0)):
        raise ValueError(f"{len(info.classes)} class names for a generator built with {build.get('n_classes', 0)} classes")
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_generator(path: Path, device: torch.device) -> tuple[nn.Module, GeneratorInfo]:
    """The generator in eval mode on `device`: G(z), z ~ N(0, I) [B, z_dim] -> [B, 3, R, R] in [-1, 1].

    A class-conditional one (info.classes not empty) takes G(z, labels), labels long [B] indexing
    info.classes; without labels it draws class i mod C for latent i of the batch.
    """
    path = Path(path)
    if not path.is_file():
        raise GeneratorFileError(f"{path}: no generator file; run the train stage first (`dvc repro train`)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which file, keep the cause
        raise GeneratorFileError(f"{path}: not a readable generator file ({exc}); re-run the train stage") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise GeneratorFileError(f"{path}: format {found!r}, expected {FORMAT!r}; re-run the train stage")
    generator = rebuild_generator(record["arch"], record["build"])
    generator.load_state_dict(record["state_dict"])
    generator.requires_grad_(False)
    info = GeneratorInfo(
        arch=record["arch"],
        z_dim=int(record["z_dim"]),
        resolution=int(record["resolution"]),
        kimg=float(record["kimg"]),
        data_md5=record["data_md5"],
        dataset_sha256=record["dataset_sha256"],
        params_fingerprint=record["params_fingerprint"],
        classes=tuple(record.get("classes", ())),  # files written before conditional models have none
    )
    return generator.to(device).eval(), info
