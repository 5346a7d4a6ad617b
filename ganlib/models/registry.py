"""Architecture registry: `train.arch` -> generator and discriminator builders.

A generator is rebuilt from (arch name, plain kwargs) alone, so a generator
file needs no pickled classes: `generator_kwargs` is what gets recorded and
`rebuild_generator` is how evaluation gets the network back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ganlib.config import ARCHITECTURE_RESOLUTIONS, TrainParams
from ganlib.errors import UserFacingError
from ganlib.models import dcgan, r3gan, resnet


class ArchitectureError(UserFacingError, ValueError):
    """An architecture name or resolution the registry does not support."""


@dataclass(frozen=True)
class Architecture:
    name: str
    resolutions: tuple[int, ...]
    generator: Callable[..., nn.Module]      # (z_dim, width, resolution, n_classes=0)
    discriminator: Callable[..., nn.Module]  # (width, resolution, n_classes=0)


# The resolutions come from ganlib.config, where loading params checks preprocess.resolution
# against them without importing torch; tests/test_config.py keeps each model module's own
# RESOLUTIONS equal to them.
ARCHITECTURES: dict[str, Architecture] = {
    "dcgan": Architecture("dcgan", ARCHITECTURE_RESOLUTIONS["dcgan"], dcgan.DCGANGenerator, dcgan.DCGANDiscriminator),
    "resnet": Architecture("resnet", ARCHITECTURE_RESOLUTIONS["resnet"], resnet.ResNetGenerator,
                           resnet.ResNetDiscriminator),
    "r3gan": Architecture("r3gan", ARCHITECTURE_RESOLUTIONS["r3gan"], r3gan.R3GANGenerator, r3gan.R3GANDiscriminator),
}


def architecture(name: str, resolution: int) -> Architecture:
    """The registered architecture, checked against the data's resolution."""
    if name not in ARCHITECTURES:
        raise ArchitectureError(f"train.arch: unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    arch = ARCHITECTURES[name]
    if resolution not in arch.resolutions:
        raise ArchitectureError(
            f"train.arch: {name} supports resolutions {arch.resolutions}, but the prepared data is "
            f"{resolution} px; set preprocess.resolution to one of them and re-run preprocess"
        )
    return arch


def generator_kwargs(cfg: TrainParams, resolution: int, n_classes: int = 0) -> dict[str, Any]:
    """The plain arguments that rebuild this generator (recorded in generator files).

    n_classes > 0: class-conditional (ganlib/models/conditioning.py); an unconditional
    generator's kwargs have no n_classes, so its files are what they always were.
    """
    architecture(cfg.arch, resolution)
    kwargs: dict[str, Any] = {"z_dim": cfg.z_dim, "width": cfg.g_width, "resolution": resolution}
    if n_classes:
        kwargs["n_classes"] = n_classes
    return kwargs


def build_generator(cfg: TrainParams, resolution: int, n_classes: int = 0) -> nn.Module:
    return rebuild_generator(cfg.arch, generator_kwargs(cfg, resolution, n_classes))


def build_discriminator(cfg: TrainParams, resolution: int, n_classes: int = 0) -> nn.Module:
    return architecture(cfg.arch, resolution).discriminator(
        width=cfg.d_width, resolution=resolution, n_classes=n_classes)


def rebuild_generator(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    return architecture(arch, int(kwargs["resolution"])).generator(**kwargs)
