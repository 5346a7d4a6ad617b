"""bench/baseline_dcgan.py: the benchmarks' DCGAN-64 baseline keeps the recipe's shapes and sizes and trains."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

BASELINE_FILE = Path(__file__).resolve().parents[1] / "bench" / "baseline_dcgan.py"

# Facts of the recipe (latent 100, widths 64, 3 channels, 64 px), counted on the
# networks the benchmark figures were first measured with.
G_PARAMETERS = 3_576_704
D_PARAMETERS = 2_765_568


@pytest.fixture(scope="module")
def baseline() -> Iterator[ModuleType]:
    # bench/ is a folder of scripts, not a package: load the module from its file. It is
    # registered in sys.modules only while it runs (dataclasses look their module up there).
    spec = importlib.util.spec_from_file_location("baseline_dcgan", BASELINE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
    yield module


def parameter_count(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def test_networks_have_the_recipes_shapes_and_sizes(baseline: ModuleType) -> None:
    generator, discriminator = baseline.BaselineGenerator(), baseline.BaselineDiscriminator()
    assert parameter_count(generator) == G_PARAMETERS
    assert parameter_count(discriminator) == D_PARAMETERS
    with torch.no_grad():
        images = generator(torch.randn(2, baseline.LATENT_DIM))
        assert images.shape == (2, 3, 64, 64)
        assert images.abs().max() <= 1  # Tanh output
        scores = discriminator(images)
    assert scores.shape == (2,)
    assert ((scores >= 0) & (scores <= 1)).all()  # Sigmoid output


def test_recipe_initialisation(baseline: ModuleType) -> None:
    training = baseline.BaselineTraining(torch.device("cpu"), seed=0)
    networks = (training.generator, training.discriminator)
    convs = torch.cat([m.weight.flatten() for n in networks for m in n.modules()
                       if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    norms = [m for n in networks for m in n.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    scales = torch.cat([m.weight.flatten() for m in norms])
    assert abs(convs.mean().item()) < 1e-3 and convs.std().item() == pytest.approx(0.02, rel=0.05)
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01) and scales.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.all(m.bias == 0) for m in norms)


def test_one_training_step_runs_and_is_seeded(baseline: ModuleType) -> None:
    real = torch.rand(4, 3, 64, 64) * 2 - 1
    first = baseline.BaselineTraining(torch.device("cpu"), seed=3)
    before = [p.detach().clone() for p in first.generator.parameters()]
    stats = first.step(real)
    assert all(torch.isfinite(torch.tensor(v)) for v in vars(stats).values())
    assert any(not torch.equal(a, b) for a, b in zip(before, first.generator.parameters()))  # G was updated
    again = baseline.BaselineTraining(torch.device("cpu"), seed=3).step(real)
    assert again == stats  # one seed: same initial weights and latents, so the same losses
