"""GAN architectures, chosen by name (`train.arch`) through a small registry."""

from ganlib.models.registry import (
    ARCHITECTURES,
    ArchitectureError,
    build_discriminator,
    build_generator,
    generator_kwargs,
    rebuild_generator,
)

__all__ = [
    "ARCHITECTURES",
    "ArchitectureError",
    "build_discriminator",
    "build_generator",
    "generator_kwargs",
    "rebuild_generator",
]
