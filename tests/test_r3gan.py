"""R3GAN architecture: shapes at every resolution, pinned sizes, fix-up initialisation, no normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_support import tiny_params

from ganlib.models.registry import ARCHITECTURES, build_discriminator, build_generator
from ganlib.models.r3gan import (
    BRANCH_CONVS,
    RESOLUTIONS,
    R3GANDiscriminator,
    R3GANGenerator,
    ResidualBlock,
    stage_channels,
)

Z_DIM, WIDTH = 64, 16
# (G, D) parameter counts at z_dim 64, width 16: pinned so that any change of architecture is noticed.
PARAMETER_COUNTS = {
    32: (178_163, 170_113),
    64: (558_067, 541_953),
    128: (894_963, 878_849),
    256: (1_231_859, 1_215_745),
}
NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_for_every_resolution():
    assert ARCHITECTURES["r3gan"].resolutions == RESOLUTIONS == (32, 64, 128, 256)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_shapes_range_and_pinned_parameter_counts(resolution):
    torch.manual_seed(0)
    G, D = R3GANGenerator(Z_DIM, WIDTH, resolution), R3GANDiscriminator(WIDTH, resolution)
    images = G(torch.randn(2, Z_DIM))
    assert images.shape == (2, 3, resolution, resolution) and images.abs().max() <= 1.0
    logits = D(images)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    assert (count(G), count(D)) == PARAMETER_COUNTS[resolution]


def test_channels_double_per_halving_up_to_the_cap():
    assert stage_channels(16, 32) == [128, 64, 32, 16]  # 4x4 ... 32x32
    assert stage_channels(16, 256) == [256, 256, 256, 128, 64, 32, 16]  # capped at 16 * width


def test_built_from_train_params():
    cfg = tiny_params("train.arch=r3gan", "train.loss=hinge").train
    assert isinstance(build_generator(cfg, 64), R3GANGenerator)
    assert isinstance(build_discriminator(cfg, 64), R3GANDiscriminator)


@pytest.mark.parametrize("resolution", (32, 128))
def test_no_normalisation_layers_anywhere(resolution):
    for net in (R3GANGenerator(Z_DIM, WIDTH, resolution), R3GANDiscriminator(WIDTH, resolution)):
        assert not [m for m in net.modules() if isinstance(m, NORMALISATION)]
        assert not [m for m in net.modules() if hasattr(m, "parametrizations")]  # no spectral norm either


def test_every_residual_block_is_the_identity_at_initialisation():
    torch.manual_seed(0)
    for net in (R3GANGenerator(Z_DIM, WIDTH, 64), R3GANDiscriminator(WIDTH, 64)):
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        assert len(blocks) == 5
        for block in blocks:
            x = torch.randn(2, block.expand.in_channels, 8, 8)
            assert torch.equal(block(x), x)
            assert block.branch(x).abs().max() == 0
            assert torch.count_nonzero(block.project.weight) == 0


def test_fixup_scales_the_other_branch_convolutions():
    torch.manual_seed(0)
    blocks = 4
    block = ResidualBlock(64, total_blocks=blocks)
    # He initialisation for LeakyReLU(0.2) has std gain / sqrt(fan_in), times L^(-1/(2m-2)).
    expected = (2 / (1 + 0.2**2)) ** 0.5 / 64**0.5 * blocks ** (-1 / (2 * BRANCH_CONVS - 2))
    assert block.expand.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert block.expand.bias.abs().max() == 0


def test_grouped_convolution_uses_groups_of_sixteen_channels():
    block = ResidualBlock(64, total_blocks=1)
    assert block.spatial.groups == 128 // 16
    assert ResidualBlock(4, total_blocks=1).spatial.groups == 1  # narrower than one group


def test_generator_file_round_trip(tmp_path):
    from ganlib.models.registry import generator_kwargs
    from ganlib.models.generator_file import GeneratorInfo, load_generator, save_generator

    cfg = tiny_params("train.arch=r3gan", "train.loss=rpgan").train
    G = build_generator(cfg, 32).eval()
    info = GeneratorInfo(arch="r3gan", z_dim=cfg.z_dim, resolution=32, kimg=1.0, data_md5=None,
                         dataset_sha256="ab" * 32, params_fingerprint="f" * 16)
    path = save_generator(tmp_path / "generator.pt", G, info, generator_kwargs(cfg, 32))
    loaded, _ = load_generator(path, torch.device("cpu"))
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        assert torch.equal(loaded(z), G(z))
