"""Architectures: shapes at every resolution, paper initialisation, registry errors, generator files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_support import tiny_params

from ganlib.models.registry import ARCHITECTURES, ArchitectureError, build_discriminator, build_generator, generator_kwargs
from ganlib.models.dcgan import DCGANGenerator
from ganlib.models.generator_file import GeneratorFileError, GeneratorInfo, load_generator, save_generator
from ganlib.models.sampling import fixed_latents, generate_images, to_uint8_images

CASES = [(arch, resolution) for arch in sorted(ARCHITECTURES) for resolution in ARCHITECTURES[arch].resolutions]


@pytest.mark.parametrize("arch,resolution", CASES)
def test_output_shapes_and_ranges(arch, resolution):
    cfg = tiny_params(f"train.arch={arch}", "train.loss=hinge").train
    G, D = build_generator(cfg, resolution), build_discriminator(cfg, resolution)
    images = G(torch.randn(3, cfg.z_dim))
    assert images.shape == (3, 3, resolution, resolution)
    assert images.abs().max() <= 1.0
    logits = D(images)
    assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_dcgan_64_matches_the_pytorch_example_layout():
    # ngf = 64 at 64 px: the example's 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3.
    G = DCGANGenerator(z_dim=100, width=64, resolution=64)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert sum(p.numel() for p in G.parameters()) == 3_576_704  # the example's netG parameter count


def test_dcgan_initialisation_follows_the_paper():
    cfg = tiny_params("train.g_width=32", "train.d_width=32").train
    for net in (build_generator(cfg, 64), build_discriminator(cfg, 64)):
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and module.weight.numel() > 5000:
                assert abs(module.weight.std().item() - 0.02) < 0.002 and abs(module.weight.mean().item()) < 0.002
            if isinstance(module, torch.nn.BatchNorm2d) and module.num_features >= 64:
                assert abs(module.weight.mean().item() - 1.0) < 0.01 and module.bias.abs().max() == 0


def test_resnet_discriminator_weights_are_spectrally_normalised():
    cfg = tiny_params("train.arch=resnet", "train.loss=hinge", "train.d_width=16").train
    D = build_discriminator(cfg, 32)
    for _ in range(30):  # power iteration converges during training-mode forwards
        D(torch.randn(2, 3, 32, 32))
    D.eval()
    layers = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) >= 9
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.05


def test_unsupported_resolution_names_arch_and_resolution():
    cfg = tiny_params().train
    with pytest.raises(ArchitectureError, match=r"train\.arch.*dcgan.*48 px"):
        build_generator(cfg, 48)


def test_generator_file_round_trip(tmp_path):
    cfg = tiny_params().train
    G = build_generator(cfg, 32).eval()
    info = GeneratorInfo(arch="dcgan", z_dim=cfg.z_dim, resolution=32, kimg=1.5, data_md5=None,
                         dataset_sha256="ab" * 32, params_fingerprint="f" * 16)
    path = save_generator(tmp_path / "generator.pt", G, info, generator_kwargs(cfg, 32))
    loaded, loaded_info = load_generator(path, torch.device("cpu"))
    assert loaded_info == info and not loaded.training
    z = fixed_latents(5, cfg.z_dim, seed=3)
    with torch.no_grad():
        assert torch.equal(loaded(z), G(z))
    record = torch.load(path, weights_only=True)  # plain tensors and primitives only
    assert record["format"] == "scenegan-generator/1" and record["build"]["resolution"] == 32


def test_generator_file_errors_name_the_file(tmp_path):
    with pytest.raises(GeneratorFileError, match="no generator file"):
        load_generator(tmp_path / "missing.pt", torch.device("cpu"))
    broken = tmp_path / "generator.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(GeneratorFileError, match=str(broken)):
        load_generator(broken, torch.device("cpu"))


def test_to_uint8_maps_range_ends_and_clips():
    images = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    pixels = to_uint8_images(images)
    assert pixels.shape == (1, 1, 5, 3) and pixels.dtype.name == "uint8"
    assert pixels[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_generate_images_is_seeded_and_batch_size_independent():
    cfg = tiny_params().train
    G = build_generator(cfg, 32).eval()
    a = generate_images(G, 10, cfg.z_dim, seed=7, batch_size=10, device=torch.device("cpu"))
    b = generate_images(G, 10, cfg.z_dim, seed=7, batch_size=3, device=torch.device("cpu"))
    c = generate_images(G, 10, cfg.z_dim, seed=8, batch_size=10, device=torch.device("cpu"))
    assert a.shape == (10, 32, 32, 3)
    assert abs(a.astype(int) - b.astype(int)).max() <= 1  # only float summation order may differ
    assert (a != c).any()


def test_fixed_latents_are_one_stream_per_seed_and_torch_fidelitys_normal_noise():
    from torch_fidelity.noise import random_normal

    many = fixed_latents(50, 16, seed=5)
    assert many.dtype == torch.float32 and many.shape == (50, 16)
    assert torch.equal(fixed_latents(7, 16, seed=5), many[:7])  # latent i does not depend on how many are drawn
    assert not torch.equal(fixed_latents(7, 16, seed=6), many[:7])
    # torch-fidelity's calculate_metrics draws these very latents for rng_seed=5, batch after batch.
    rng = np.random.RandomState(5)
    assert torch.equal(torch.cat([random_normal(rng, (20, 16)), random_normal(rng, (30, 16))]), many)


def test_evaluation_and_publishing_quantise_with_the_sampling_contract():
    from ganlib.metrics.sources import SeededGenerator
    from ganlib.publish.images import images_to_uint8

    # Pixel values k + 0.5, exact in float32: rounding half to even and floor(x + 0.5) disagree on each.
    halves = (torch.tensor([0.5, 2.5, 4.5, 126.5]) - 127.5) / 127.5
    output = halves.view(1, 1, 2, 2).expand(1, 3, 2, 2)

    class Constant(torch.nn.Module):
        def forward(self, z):
            return output.expand(z.shape[0], 3, 2, 2)

    contract = to_uint8_images(output)
    assert contract[0, :, :, 0].flatten().tolist() == [0, 2, 4, 126]
    evaluated = SeededGenerator(Constant(), z_dim=4, resolution=2)(torch.zeros(1, 4))
    assert np.array_equal(evaluated.permute(0, 2, 3, 1).numpy(), contract)
    assert np.array_equal(images_to_uint8(output, resolution=2), contract)
