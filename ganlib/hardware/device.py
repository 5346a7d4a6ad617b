"""Choosing the torch device from a device setting, and refusing one this machine lacks before any work.

One check for every stage: training (`base.device`), evaluation and the publish
gate's re-scoring (`evaluate.device`).

`require_device` is the check alone: a command calls it for every device
setting its stages will use before the first stage starts (so that a
pipeline does not preprocess for minutes and then find no GPU), and
`python -m flows.stage` calls it before the stage writes anything. It
imports torch only for an explicit accelerator: `auto` and `cpu` need no check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganlib.errors import UserFacingError

if TYPE_CHECKING:
    import torch


class DeviceError(UserFacingError, RuntimeError):
    """A device setting names an accelerator this machine does not have (or this torch build cannot use)."""


def require_device(name: str, key: str = "base.device") -> None:
    """Raise DeviceError if `name` (the value of the setting `key`) is a device that is absent here."""
    if name in ("auto", "cpu"):
        return
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise DeviceError(
            f"{key} is 'cuda' but no CUDA device is visible ({build}); set {key}: auto or cpu, "
            "or run on a machine with a GPU"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"{key} is 'mps' but MPS is not available; set {key}: auto or cpu")


def resolve_device(name: str, key: str = "base.device") -> torch.device:
    """auto -> cuda, then mps, then cpu. An explicit device that is absent is a DeviceError naming `key`."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    require_device(name, key)
    return torch.device(name)
