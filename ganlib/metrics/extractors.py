"""Feature extractors, registered with torch-fidelity under their own names.

- `fid-inception-v3-tf2015`: the standard FID Inception (TF 2015-12-05 graph)
  as a TorchScript from `make weights`. It expects a float batch already
  resized to 299x299 and scaled to (x - 128) / 128, and returns the 2048-d
  pool features; this wrapper does the resize exactly as torch-fidelity's own
  FeatureExtractorInceptionV3 does (TF1-compatible bilinear), so that the two
  agree.
- `inception-v3-compat`: torch-fidelity's own, used only with weights found on
  disk (never None, which would make it download).
- `dinov2-vit-b-14-file`: torch-fidelity's `dinov2-vit-b-14` (its resize,
  normalisation and CLS-token features, inherited), with the network loaded
  from the published checkpoint on disk (ganlib/metrics/dinov2.py) instead of
  torch.hub, which would download code and weights. For FD_DINOv2.
- `tiny-random-conv`: a small convolutional net with fixed random weights. Its
  numbers mean nothing next to published FIDs; it exists so that tests and
  smoke runs exercise the real pipeline in milliseconds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from ganlib.config import EvaluateParams
from ganlib.metrics.dinov2 import load_dinov2
from ganlib.metrics.weight_files import (
    DINOV2_SHA256,
    FID_INCEPTION_SHA1,
    WeightsError,
    fid_inception_path,
    file_digest,
    find_dinov2_weights,
    find_is_inception_weights,
)

FID_INCEPTION = "fid-inception-v3-tf2015"
TORCH_FIDELITY_INCEPTION = "inception-v3-compat"
TINY_RANDOM_CONV = "tiny-random-conv"
DINOV2 = "dinov2-vit-b-14-file"  # not torch-fidelity's own name: that one is registered, and downloads

POOL_FEATURES = "2048"
IS_LOGITS = "logits_unbiased"  # torch-fidelity's layer for the Inception Score
TINY_FEATURES = "tiny64"
DINOV2_FEATURES = "dinov2"  # torch-fidelity's layer name: the final-norm CLS token


def _require_uint8_batch(x) -> None:
    """torch-fidelity hands extractors uint8 [B, 3, H, W]; anything else is a caller's bug."""
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
        raise ValueError(f"expected a uint8 batch [B, 3, H, W], got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")


class FidInceptionTF2015(FeatureExtractorBase):
    INPUT_IMAGE_SIZE = 299

    # torch-fidelity constructs every registered extractor as
    # cls(name, features_list, **all_of_calculate_metrics_kwargs), hence **kwargs.
    def __init__(self, name, features_list, feature_extractor_weights_path=None, cpu_channels_last=True,
                 features_precision="fp32", **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise WeightsError(f"{name}: no weights path given; run `make weights` (this extractor never downloads)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load.*")
            self.network = torch.jit.load(str(feature_extractor_weights_path), map_location="cpu").eval()
        # Speed settings, chosen by measurement (ganlib/metrics/speed.py): channels_last
        # moves features by ~1e-6; bf16 autocast (CPU) by ~1e-2 relative, which moved
        # the FID of 96 vs 96 scenes by 0.02% (76.438 -> 76.425).
        self.cpu_channels_last = cpu_channels_last
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16}[features_precision]

    @staticmethod
    def get_provided_features_list():
        return (POOL_FEATURES,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric == "isc":
            raise ValueError(f"{FID_INCEPTION} has no classifier head, so it cannot compute the Inception Score")
        return POOL_FEATURES

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 4, 4]) * 255).to(torch.uint8)

    def forward(self, x):
        _require_uint8_batch(x)
        x = interpolate_bilinear_2d_like_tensorflow1x(
            x.to(torch.float32), size=(self.INPUT_IMAGE_SIZE, self.INPUT_IMAGE_SIZE), align_corners=False
        )
        x = (x - 128) / 128
        if self.cpu_channels_last and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        # TorchScript's profiling executor re-profiles and recompiles this graph for
        # each new module instance and batch shape: one call in three took ~3x longer
        # here, and a conv-bound network gains nothing from its fusions.
        autocast = torch.autocast(x.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)
        with torch.jit.optimized_execution(False), autocast:
            return (self.network(x).to(torch.float32),)


class TinyRandomConv(FeatureExtractorBase):
    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        generator = torch.Generator().manual_seed(20240101)
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / fan_in**0.5)
                conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=generator))

    @staticmethod
    def get_provided_features_list():
        return (TINY_FEATURES,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return TINY_FEATURES

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 8, 8]) * 255).to(torch.uint8)

    def forward(self, x):
        _require_uint8_batch(x)
        x = x.to(torch.float32) / 127.5 - 1
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        # Mean and spread per channel: the spread is what makes the features react to noise.
        return (torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1),)


class DinoV2FromFile(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor with its network read from a `*_pretrain.pth` file.

    forward (TF1-compatible bilinear resize to 224, ImageNet normalisation,
    CLS token) and the layer names are inherited unchanged, so the features are
    torch-fidelity's; only the construction differs, because its own would
    call torch.hub.load (a download) and refuses a weights path.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)  # not the parent's: it would download
        if feature_extractor_weights_path is None:
            raise WeightsError(f"{name}: no weights path given; this extractor never downloads")
        self.feature_extractor_internal_dtype = torch.float32  # the parent's default; forward reads it
        self.model = load_dinov2(Path(feature_extractor_weights_path))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def can_be_compiled():
        return False


def register_extractors() -> None:
    """Make our extractors known to torch-fidelity (idempotent)."""
    for name, cls in ((FID_INCEPTION, FidInceptionTF2015), (TINY_RANDOM_CONV, TinyRandomConv), (DINOV2, DinoV2FromFile)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


@dataclass(frozen=True)
class ExtractorSpec:
    """Which extractor, with which weights, and which of its layers FID/KID/PRC use."""

    name: str
    weights_path: Path | None
    weights_digest: str | None  # "sha1:..." / "sha256:..." of that file, for cache keys; None: no weights file
    feature_layer: str
    description: str  # what reports print: network, layer, weights identity
    precision: str = "fp32"     # fp32 | bf16: the dtype features are computed in (changes the numbers slightly)
    channels_last: bool = True  # CPU memory layout (speed only)

    def identity(self) -> str:
        """What makes features comparable: the extractor, plus the precision when it is not fp32."""
        return self.name if self.precision == "fp32" else f"{self.name}@{self.precision}"


def resolve_extractor(settings: EvaluateParams, weights_dir: Path, root: Path) -> ExtractorSpec:
    """The configured extractor with verified weights, or WeightsError saying what to do."""
    if settings.extractor == FID_INCEPTION:
        path = fid_inception_path(weights_dir)  # refuses a file whose sha1 is not FID_INCEPTION_SHA1
        return ExtractorSpec(
            FID_INCEPTION, path, f"sha1:{FID_INCEPTION_SHA1}", POOL_FEATURES,
            f"{FID_INCEPTION} (FID Inception TorchScript, pool3 2048-d, sha1 {FID_INCEPTION_SHA1[:12]})",
        )
    if settings.extractor == TORCH_FIDELITY_INCEPTION:
        path, reason = find_is_inception_weights(settings.inception_weights, root, weights_dir)
        if path is None:
            raise WeightsError(f"evaluate.extractor is {TORCH_FIDELITY_INCEPTION} but {reason}")
        # The cache key records the file's whole sha256 (find_is_inception_weights compared it with the pin).
        return ExtractorSpec(
            TORCH_FIDELITY_INCEPTION, path, f"sha256:{file_digest(path, 'sha256')}", POOL_FEATURES,
            f"{TORCH_FIDELITY_INCEPTION} (torch-fidelity InceptionV3, 2048-d, {path.name})",
        )
    return ExtractorSpec(
        TINY_RANDOM_CONV, None, None, TINY_FEATURES,
        f"{TINY_RANDOM_CONV} (fixed random 2-layer CNN, 64-d; for tests only, not comparable with published FID)",
    )


def is_extractor_spec(weights_path: Path) -> ExtractorSpec:
    """torch-fidelity's Inception with its classifier head, for the Inception Score (never cached: no digest)."""
    return ExtractorSpec(
        TORCH_FIDELITY_INCEPTION, weights_path, None, IS_LOGITS,
        f"{TORCH_FIDELITY_INCEPTION} (torch-fidelity InceptionV3 logits, {weights_path.name})",
    )


def dinov2_extractor_spec(weights_dir: Path) -> tuple[ExtractorSpec | None, str | None]:
    """The DINOv2 ViT-B/14 extractor for FD_DINOv2: (spec, None), or (None, why its weights are unavailable)."""
    path, reason = find_dinov2_weights(weights_dir)  # checks the whole sha256
    if path is None:
        return None, reason
    return ExtractorSpec(
        DINOV2, path, f"sha256:{DINOV2_SHA256}", DINOV2_FEATURES,
        f"{DINOV2} (DINOv2 ViT-B/14 CLS token, 768-d, {path.name}, sha256 {DINOV2_SHA256[:12]})",
    ), None


def build_extractor(spec: ExtractorSpec, layers: list[str], device: torch.device) -> FeatureExtractorBase:
    """Instantiate through torch-fidelity's registry, as calculate_metrics would."""
    register_extractors()
    if spec.name == TORCH_FIDELITY_INCEPTION and spec.weights_path is None:
        raise WeightsError(f"{spec.name}: no weights path; refusing to let torch-fidelity download them")
    return create_feature_extractor(
        spec.name,
        layers,
        cuda=device.type == "cuda",
        feature_extractor_weights_path=None if spec.weights_path is None else str(spec.weights_path),
        verbose=False,
        # Reach our extractors' constructors; torch-fidelity's own ignores them.
        cpu_channels_last=spec.channels_last,
        features_precision=spec.precision,
    )
