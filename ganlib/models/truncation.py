"""The truncation trick in z-space: fewer, cleaner samples in exchange for diversity.

    truncate_latents(latents, psi)   z -> psi * z (psi = 1: unchanged, bit for bit)
    check_truncation(psi, name)      a clear error for a psi outside (0, 1]

Which variant: latents are *scaled* toward the mean of the prior (0), the
z-space form of StyleGAN's psi. BigGAN instead *resampled* every component
whose magnitude exceeded a threshold. Scaling keeps each latent's direction,
so image i at psi 0.6 is the same scene as image i at psi 1.0, drawn closer
to the "average" scene: a table or grid across psi compares like with like.
Training never imports this module; it does not shape any trained weights.
"""

from __future__ import annotations

import torch

from ganlib.errors import UserFacingError


class TruncationError(UserFacingError, ValueError):
    """A truncation psi outside (0, 1]."""


def check_truncation(psi: float, name: str = "truncation") -> float:
    """`psi` as a float when 0 < psi <= 1, else TruncationError naming `name` (a CLI flag or params key)."""
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise TruncationError(f"{name}: expected a number in (0, 1], got {psi!r}") from None
    if not 0.0 < value <= 1.0:
        raise TruncationError(
            f"{name}: {psi!r} is outside (0, 1]; 1.0 is no truncation, smaller values trade diversity for "
            "fidelity (0.7 is a common choice)"
        )
    return value


def truncate_latents(latents: torch.Tensor, psi: float) -> torch.Tensor:
    """`latents` scaled by psi toward the prior's mean (0); psi = 1.0 returns them unchanged (same tensor)."""
    psi = check_truncation(psi)
    return latents if psi == 1.0 else latents * psi
