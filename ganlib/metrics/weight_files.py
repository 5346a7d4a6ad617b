"""Where the feature extractors' weights are and whether they are the right bytes: find, verify, never download.

Evaluation and the FID curve during training read weights through this
module only; installing them (`make weights`, `install --metric`) is
ganlib/metrics/weights.py. Keeping the two apart keeps the downloader out of
what the stages run and depend on (dvc.yaml deps, ganlib/io/source.py): a
change to how files are fetched never re-runs a stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ganlib.errors import UserFacingError

FID_INCEPTION_FILE = "fid-inception-v3-tf2015-pool3.torchscript.pt"
FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

# torch-fidelity's inception-v3-compat weights (with the 1008-way classifier for IS).
# torch.hub names a checkpoint with the first 8 hex digits of its sha256.
TORCH_FIDELITY_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_INCEPTION_SHA256_PREFIX = "6726825d"
# The whole digest cannot be computed here (no internet). It is the value that several
# unrelated public projects pin for this exact file (found by code search, 2026-12; one
# also records its size, 95,628,359 bytes), and it starts with the 8 digits the
# file name carries (tests check that). A wrong pin fails the install, never passes it.
TORCH_FIDELITY_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

# DINOv2 ViT-B/14 (LVD-142M), the file torch.hub.load("facebookresearch/dinov2", "dinov2_vitb14")
# fetches: dinov2/hub/backbones.py builds the URL as _DINOV2_BASE_URL/dinov2_vitb14/dinov2_vitb14_pretrain.pth.
# Meta publishes no checksum; the sha256 is the one several public projects pin for this file
# (code search, 2026-12), not computed here (no internet). ViT-B rather than the ViT-L of
# Stein et al. 2023: 86 M parameters instead of 304 M (a ~350 MB file, not 1.2 GB) and about
# 3.5x fewer FLOPs per image, so its numbers are not comparable with their ViT-L tables.
DINOV2_FILE = "dinov2_vitb14_pretrain.pth"
DINOV2_SHA256 = "0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73"

# CLIP ViT-B/32 as torch-fidelity's clip-vit-b-32 downloads it: OpenAI's URL carries the
# file's full sha256 (OpenAI's clip.py and torch.hub's check_hash verify it), and the file
# name is torch-fidelity's own, so a copy in the torch hub cache is found by it as well.
CLIP_VIT_B_32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
CLIP_VIT_B_32_FILE = f"clip-vit-b-32-{CLIP_VIT_B_32_SHA256}.pt"

INSTALL_COMMAND = "python -m ganlib.metrics.weights install --metric {metric} --params params.yaml"


class WeightsError(UserFacingError):
    """Weights are missing, corrupt or could not be installed; the message says what to run."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fid_inception_path(weights_dir: Path) -> Path:
    """The verified FID Inception TorchScript, or WeightsError saying to run `make weights`."""
    path = Path(weights_dir) / FID_INCEPTION_FILE
    if not path.is_file():
        raise WeightsError(
            f"{path}: FID Inception weights not found. Run `make weights` "
            f"(or `python -m ganlib.metrics.weights install {weights_dir}`); evaluation never downloads them."
        )
    actual = file_digest(path, "sha1")
    if actual != FID_INCEPTION_SHA1:
        raise WeightsError(
            f"{path}: corrupt FID Inception weights (sha1 {actual}, expected {FID_INCEPTION_SHA1}). "
            "Delete the file and run `make weights`."
        )
    return path


def find_is_inception_weights(
    configured: str | None, root: Path, weights_dir: Path | None = None
) -> tuple[Path | None, str | None]:
    """torch-fidelity's inception-v3-compat weights for IS: (path, None), or (None, why they are unavailable).

    Looks at `evaluate.inception_weights` (relative to the repository root) when
    set, else in `weights_dir` (where `install --metric is` puts them), else in
    the torch hub cache, where torch-fidelity itself would have put them.
    Never downloads.
    """
    if configured is not None:
        candidate = Path(configured)
        candidate = candidate if candidate.is_absolute() else Path(root) / candidate
        # Names as the user wrote them, never resolved: this text lands in evaluation.json, which must read the
        # same in the workspace and in a DVC experiment's temporary copy of it.
        where = f"evaluate.inception_weights ({configured})"
    else:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_INCEPTION_FILE
        local = None if weights_dir is None else Path(weights_dir) / TORCH_FIDELITY_INCEPTION_FILE
        candidate = local if local is not None and local.is_file() else hub
        where = f"the torch hub cache ({_from_home(hub)}); set evaluate.inception_weights to use another copy"
        if local is not None:
            where = f"{_shown(local.parent, Path(root))} or " + where
    if not candidate.is_file():
        return None, (
            f"torch-fidelity's Inception classifier weights ({TORCH_FIDELITY_INCEPTION_FILE}) not found in {where}; "
            f"with internet, `{INSTALL_COMMAND.format(metric='is')}` installs them"
        )
    digest = file_digest(candidate, "sha256")
    if digest != TORCH_FIDELITY_INCEPTION_SHA256:
        return None, (f"{_shown(candidate, Path(root))}: sha256 {digest[:12]}... is not torch-fidelity's "
                      f"{TORCH_FIDELITY_INCEPTION_SHA256[:12]}...; replace the file")
    return candidate, None


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the repository root where it lies inside it (the form params.yaml uses)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _from_home(path: Path) -> str:
    """`path` with the user's home folder as ~: the default torch hub cache reads the same on every machine."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def find_dinov2_weights(weights_dir: Path, root: Path | None = None) -> tuple[Path | None, str | None]:
    """The DINOv2 ViT-B/14 checkpoint for FD_DINOv2: (path, None), or (None, why it is unavailable). Never downloads.

    With `root` the reason names the file relative to it, as params.yaml does (it is recorded in
    evaluation.json, which must read the same in a DVC experiment's temporary copy of the project).
    """
    path = Path(weights_dir) / DINOV2_FILE
    command = INSTALL_COMMAND.format(metric="fd-dinov2")
    shown = path if root is None else _shown(path, Path(root))
    if not path.is_file():
        return None, (f"DINOv2 ViT-B/14 weights ({DINOV2_FILE}) not found in {Path(shown).parent.as_posix()}; "
                      f"with internet, `{command}` installs them")
    digest = file_digest(path, "sha256")
    if digest != DINOV2_SHA256:
        return None, f"{shown}: sha256 {digest[:12]}... is not {DINOV2_SHA256[:12]}...; delete it and run `{command}`"
    return path, None
