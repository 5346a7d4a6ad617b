"""The DINOv2 vision transformer (Oquab et al. 2023), inference only, to load Meta's published checkpoints offline.

torch-fidelity 0.4 registers `dinov2-vit-b-14`, but builds its network with
torch.hub.load("facebookresearch/dinov2", ...): model code from GitHub and
weights from dl.fbaipublicfiles.com at run time, and NotImplementedError when
given a weights file. This is the inference path of that repository's
DinoVisionTransformer (dinov2/models/vision_transformer.py and
dinov2/layers/, Apache-2.0) in the configuration its hub entry points build
(LayerScale, plain MLP, no register tokens, no block chunks, positional
embeddings interpolated bicubically with the 0.1 offset, no antialias), with
the same parameter names, so a released `*_pretrain.pth` loads with
strict=True. Its forward is the hub model's: the final-norm CLS token.

The architecture is read off the state dict (width, depth, patch size, grid),
so ViT-S/B/L checkpoints and the tiny random ones the tests build all load
through dinov2_from_state_dict.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_DIM = 64            # every released DINOv2 ViT (S 384/6, B 768/12, L 1024/16, g 1536/24)
INTERPOLATE_OFFSET = 0.1  # the hub models' setting: kept for their numbers, see interpolate_pos_encoding
LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, patches, dim]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2ViT(nn.Module):
    """DINOv2's ViT: image [B, 3, H, W] (ImageNet-normalised, sides multiples of patch_size) -> CLS token [B, dim]."""

    def __init__(self, dim: int, depth: int, patch_size: int, grid: int, mlp_hidden: int | None = None,
                 num_heads: int | None = None):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))  # trained at grid x grid patches (518 px)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used in training only; in the checkpoint, so kept
        heads = num_heads or max(1, dim // HEAD_DIM)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_hidden or 4 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def interpolate_pos_encoding(self, tokens: int, height: int, width: int) -> torch.Tensor:
        """The positional embeddings for a height x width input, resized as DINOv2 does (bicubic, scale + 0.1)."""
        n = self.pos_embed.shape[1] - 1
        if tokens - 1 == n and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = int(math.sqrt(n))
        rows, cols = height // self.patch_size, width // self.patch_size
        # DINOv2 passes a scale factor with a 0.1 offset (a work-around from DINO v1 for float
        # round-off), not a size; the resampling weights depend on it, so we do the same.
        patch_pos = F.interpolate(
            pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2),
            scale_factor=((rows + INTERPOLATE_OFFSET) / grid, (cols + INTERPOLATE_OFFSET) / grid),
            mode="bicubic",
            antialias=False,
        )
        if patch_pos.shape[-2:] != (rows, cols):
            raise ValueError(f"positional embeddings resized to {tuple(patch_pos.shape[-2:])}, expected {(rows, cols)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(tokens.shape[1], height, width)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def dinov2_from_state_dict(state: dict[str, torch.Tensor]) -> DinoV2ViT:
    """A DinoV2ViT shaped after `state` (a released *_pretrain.pth), with it loaded strictly."""
    if any(key.startswith("register_tokens") for key in state) or any(".mlp.w12." in key for key in state):
        raise ValueError("register-token and SwiGLU (ViT-g) DINOv2 checkpoints are not supported; use ViT-S/B/L _pretrain.pth")
    try:
        dim = state["cls_token"].shape[-1]
        depth = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("blocks."))
        patch_size = state["patch_embed.proj.weight"].shape[-1]
        grid = int(math.isqrt(state["pos_embed"].shape[1] - 1))
        mlp_hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"not a DINOv2 ViT state dict ({type(exc).__name__}: {exc})") from None
    model = DinoV2ViT(dim, depth, patch_size, grid, mlp_hidden)
    model.load_state_dict(state, strict=True)
    return model


def load_dinov2(path: Path) -> DinoV2ViT:
    """The network in a DINOv2 `*_pretrain.pth` file (a plain state dict: loaded without unpickling code)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return dinov2_from_state_dict(state).eval()
