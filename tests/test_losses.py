"""Losses, regularisers, DiffAugment and EMA: behaviour on toy problems and exact values where known."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from train_support import one_thread  # noqa: F401 (fixture)

from ganlib.training.diffaugment import augment_with_probability, diff_augment
from ganlib.training.ema import ema_beta, recalibrate_batchnorm_, update_ema
from ganlib.training.losses import LOSSES, gan_loss, gradient_penalty, r1_penalty, r2_penalty

# Data ~ N(2, 0.5^2); the generator is N(shift, 0.5^2) with shift starting at 0, so a loss that
# works moves `shift` to 2. WGAN-GP gets the paper's 5 critic steps and beta1 = 0.
TOY_SETTINGS = {
    "bce": dict(steps=150, d_steps=1, lr=2e-2, beta1=0.5),
    "hinge": dict(steps=150, d_steps=1, lr=2e-2, beta1=0.5),
    "lsgan": dict(steps=150, d_steps=1, lr=2e-2, beta1=0.5),
    "wgan-gp": dict(steps=200, d_steps=5, lr=1e-2, beta1=0.0),
    "rpgan": dict(steps=150, d_steps=1, lr=2e-2, beta1=0.5),
}


def train_toy_shift(name: str, steps: int, d_steps: int, lr: float, beta1: float, seed: int) -> float:
    torch.manual_seed(seed)
    loss = gan_loss(name)
    shift = nn.Parameter(torch.zeros(()))
    critic = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    opt_g = torch.optim.Adam([shift], lr, betas=(beta1, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr, betas=(beta1, 0.9))

    def D(x: torch.Tensor) -> torch.Tensor:
        return critic(x).reshape(-1)

    def G(n: int) -> torch.Tensor:
        return 0.5 * torch.randn(n, 1) + shift

    for _ in range(steps):
        for _ in range(d_steps):
            real, fake = 2 + 0.5 * torch.randn(64, 1), G(64).detach()
            d_loss = loss.discriminator(D(real), D(fake))
            if name == "wgan-gp":
                d_loss = d_loss + gradient_penalty(D, real, fake, weight=1.0)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        g_loss = loss.generator(D(G(64)), D(real))  # rpgan pairs the fakes with the last reals
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return shift.item()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_moves_the_generator_onto_the_data(name, one_thread):
    for seed in (0, 1):
        shift = train_toy_shift(name, seed=seed, **TOY_SETTINGS[name])
        assert abs(shift - 2.0) < 0.25, f"{name}, seed {seed}: generator mean {shift:.2f}, data mean 2"


def test_losses_reward_the_right_side():
    confident_real, confident_fake = torch.full((8,), 10.0), torch.full((8,), -10.0)
    for name, loss in LOSSES.items():
        # A discriminator that tells real from fake has a lower loss than one that has them swapped.
        assert loss.discriminator(confident_real, confident_fake) < loss.discriminator(confident_fake, confident_real), name
        # A generator whose fakes are taken for real has a lower loss.
        # (Paired with reals D is unsure of, for the losses that compare a fake with its real.)
        unsure = torch.zeros(8)
        assert loss.generator(confident_real, unsure) < loss.generator(confident_fake, unsure), name
    bce, hinge = LOSSES["bce"], LOSSES["hinge"]
    assert bce.discriminator(confident_real, confident_fake) < 1e-4
    assert hinge.discriminator(confident_real, confident_fake) == 0  # beyond the margin: no gradient
    # Non-saturating: a generator that D sees through still gets a strong signal.
    fake = confident_fake.clone().requires_grad_(True)
    bce.generator(fake).backward()
    assert fake.grad.abs().mean() > 0.1


def test_rpgan_is_softplus_of_the_paired_logit_differences():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 3.0, 0.5])
    rpgan = gan_loss("rpgan")
    softplus = lambda t: math.log1p(math.exp(t))  # noqa: E731
    expected_d = sum(softplus(-(r - f)) for r, f in zip(real.tolist(), fake.tolist())) / 3
    expected_g = sum(softplus(-(f - r)) for r, f in zip(real.tolist(), fake.tolist())) / 3
    assert rpgan.discriminator(real, fake).item() == pytest.approx(expected_d)
    assert rpgan.generator(fake, real).item() == pytest.approx(expected_g)
    # Pairs, not a batch mean: the same logits in another pairing give another loss.
    assert rpgan.discriminator(real, fake.flip(0)).item() != pytest.approx(expected_d)
    assert rpgan.pairs_real_in_g and not any(loss.pairs_real_in_g for name, loss in LOSSES.items() if name != "rpgan")
    with pytest.raises(ValueError, match="paired real"):
        rpgan.generator(fake, None)


def test_r1_and_r2_match_autograd_on_a_small_discriminator():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))

    def D(x: torch.Tensor) -> torch.Tensor:
        return critic(x).reshape(-1)

    for penalty, gamma in ((r1_penalty, 0.4), (r2_penalty, 2.5)):
        images = torch.randn(6, 3, 5, 5)
        expected = 0.0
        for image in images:  # per sample, by plain autograd on one image at a time
            leaf = image[None].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(leaf).sum(), leaf)
            expected += grad.square().sum().item()
        expected = gamma / 2 * expected / len(images)
        leaf = images.clone().requires_grad_(True)
        value = penalty(D(leaf), leaf, gamma)
        assert value.item() == pytest.approx(expected, rel=1e-5)
        value.backward()  # differentiable in D's weights (double backward)
        assert critic[0].weight.grad.abs().sum() > 0
        critic.zero_grad()


def test_penalties_match_their_closed_forms():
    w = torch.tensor([[3.0, 4.0]])  # a linear critic with gradient norm 5 everywhere
    critic = nn.Linear(2, 1, bias=False)
    critic.weight.data.copy_(w)

    def D(x: torch.Tensor) -> torch.Tensor:
        return critic(x).reshape(-1)

    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(D, real, fake, weight=10.0).item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)
    real = real.requires_grad_(True)
    assert r1_penalty(D(real), real, gamma=0.2).item() == pytest.approx(0.5 * 0.2 * 25.0)
    with pytest.raises(ValueError, match="train.loss"):
        gan_loss("wasserstein")


def underflowing_fp16_critic() -> nn.Module:
    """A linear critic whose backward pass underflows in fp16: the gradient reaching its first layer
    is 1e-4 * 1e-4 = 1e-8 per unit, below fp16's smallest subnormal (6e-8), yet 2048 units of weight
    6e4 make the input gradient 2048 * 6e4 * 1e-8 = 1.23 per coordinate (norm 2.46 in 4-d)."""
    critic = nn.Sequential(nn.Linear(4, 2048, bias=False), nn.Linear(2048, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        critic[0].weight.fill_(6e4)
        critic[1].weight.fill_(1e-4)
        critic[2].weight.fill_(1e-4)
    return critic


def test_penalties_under_fp16_autocast_are_taken_at_the_loss_scale():
    critic = underflowing_fp16_critic()

    def D(x: torch.Tensor, fp16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            return critic(x).reshape(-1)

    real, fake = torch.rand(8, 4) * 2e-3 - 1e-3, torch.rand(8, 4) * 2e-3 - 1e-3  # small: no fp16 overflow forward
    scale = torch.tensor(2.0**12)  # what a GradScaler would hold after backing off from 2**16

    def penalties(fp16: bool, grad_scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = real.clone().requires_grad_(True)
        r1 = r1_penalty(D(x, fp16), x, gamma=1.0, grad_scale=grad_scale)
        gp = gradient_penalty(lambda y: D(y, fp16), real, fake, weight=1.0,
                              generator=torch.Generator().manual_seed(0), grad_scale=grad_scale)
        return r1, gp

    r1_fp32, gp_fp32 = penalties(fp16=False, grad_scale=None)
    assert r1_fp32.item() == pytest.approx(0.5 * 4 * 1.2288**2, rel=1e-3)
    assert gp_fp32.item() == pytest.approx((2.4576 - 1) ** 2, rel=1e-3)
    # The trap: at scale 1 the fp16 input gradient is exactly zero, so R1 vanishes and WGAN-GP reads (0 - 1)^2.
    r1_unscaled, gp_unscaled = penalties(fp16=True, grad_scale=None)
    assert r1_unscaled.item() == 0.0 and gp_unscaled.item() == 1.0
    # At the loss scale the fp16 penalties agree with fp32 (fp16 rounds the weights: 1e-3 relative).
    r1_scaled, gp_scaled = penalties(fp16=True, grad_scale=scale)
    assert r1_scaled.dtype == gp_scaled.dtype == torch.float32
    torch.testing.assert_close(r1_scaled, r1_fp32, rtol=1e-2, atol=0)
    torch.testing.assert_close(gp_scaled, gp_fp32, rtol=1e-2, atol=0)
    assert r1_scaled.requires_grad and gp_scaled.requires_grad  # D's update back-propagates through them


# ---------------------------------------------------------------------- DiffAugment


def test_diffaugment_is_seeded_differentiable_and_keeps_shape():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    policy = ["color", "translation", "cutout"]
    a = diff_augment(images, policy, torch.Generator().manual_seed(1))
    b = diff_augment(images, policy, torch.Generator().manual_seed(1))
    c = diff_augment(images, policy, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    leaf = images.clone().requires_grad_(True)
    diff_augment(leaf, policy, torch.Generator().manual_seed(1)).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="train.diffaugment"):
        diff_augment(images, ["rotate"])


def test_translation_shifts_each_image_with_zero_fill():
    images = torch.rand(6, 3, 16, 16) + 0.5  # no zeros, so zero fill is visible
    shifted = diff_augment(images, ["translation"], torch.Generator().manual_seed(0))
    for original, out in zip(images, shifted):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):  # 1/8 of 16 px
                expected = torch.zeros_like(original)
                src = original[:, max(dy, 0) : 16 + min(dy, 0), max(dx, 0) : 16 + min(dx, 0)]
                expected[:, max(-dy, 0) : 16 + min(-dy, 0), max(-dx, 0) : 16 + min(-dx, 0)] = src
                matches.append(torch.equal(out, expected))
        assert sum(matches) == 1


def test_cutout_zeroes_one_square_of_at_most_half_side():
    images = torch.rand(8, 3, 16, 16) + 0.5
    out = diff_augment(images, ["cutout"], torch.Generator().manual_seed(0))
    for original, result in zip(images, out):
        cut = result[0] == 0
        assert 0 < cut.sum() <= 64
        rows, cols = cut.any(1).nonzero().flatten(), cut.any(0).nonzero().flatten()
        assert cut.sum() == len(rows) * len(cols)  # a (clipped) rectangle
        assert torch.equal(result[:, ~cut], original[:, ~cut])


# ---------------------------------------------------------------------- EMA


def test_ema_beta_is_a_half_life_in_images():
    beta = ema_beta(batch_size=64, images_seen=10**6, halflife_kimg=10.0, rampup=0.0)
    assert beta ** (10_000 / 64) == pytest.approx(0.5)
    # Ramp-up: early in training the half-life is capped at rampup * images seen.
    early = ema_beta(batch_size=64, images_seen=2000, halflife_kimg=10.0, rampup=0.05)
    assert early ** (100 / 64) == pytest.approx(0.5)
    assert ema_beta(64, 1000, halflife_kimg=0.0, rampup=0.0) == 0.0


def test_update_ema_interpolates_weights_and_leaves_buffers_alone():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    model.weight.data.fill_(1.0)
    ema.weight.data.fill_(0.0)
    model.running_mean.fill_(5.0)
    update_ema(ema, model, beta=0.75)
    assert torch.allclose(ema.weight, torch.full((3,), 0.25))
    assert torch.equal(ema.running_mean, torch.zeros(3))  # the raw network's statistics are not the average's
    update_ema(ema, model, beta=0.0)
    assert torch.equal(ema.weight, model.weight)
    assert math.isclose(ema_beta(32, 0, 1.0, 0.05), 0.0)


def test_recalibrated_batchnorm_holds_the_mean_of_the_networks_own_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.BatchNorm1d(5)).eval()
    net[1].running_mean.fill_(7.0)  # stale statistics, as copied from another network
    momenta = (net[1].momentum, net[4].momentum)
    latents = torch.randn(48, 4)

    seen: dict[int, list[torch.Tensor]] = {1: [], 4: []}
    reference = copy.deepcopy(net).train()
    for index in seen:
        reference[index].register_forward_hook(lambda m, inputs, out, i=index: seen[i].append(inputs[0].detach()))
    with torch.no_grad():
        for z in latents.split(16):
            reference(z)  # train mode: each layer normalises with its batch statistics

    recalibrate_batchnorm_(net, latents, batch_size=16)
    for index, batches in seen.items():
        mean = torch.stack([b.mean(0) for b in batches]).mean(0)
        var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
        torch.testing.assert_close(net[index].running_mean, mean)
        torch.testing.assert_close(net[index].running_var, var)
    assert not net.training and (net[1].momentum, net[4].momentum) == momenta
    again = copy.deepcopy(net)
    recalibrate_batchnorm_(again, latents, batch_size=16)
    # A function of the weights and the latents alone: recalibrating again changes nothing.
    assert all(torch.equal(a, b) for a, b in zip(again.buffers(), net.buffers()))


def test_augmentation_probability_augments_that_fraction_and_p_1_is_plain_diffaugment():
    images = torch.rand(4000, 3, 8, 8) * 2 - 1
    policy = ["color", "translation"]
    everything = augment_with_probability(images, policy, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(everything, diff_augment(images, policy, torch.Generator().manual_seed(3)))
    assert augment_with_probability(images, policy, 0.0, torch.Generator().manual_seed(3)) is images
    some = augment_with_probability(images, policy, 0.3, torch.Generator().manual_seed(3))
    changed = (some != images).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.03)  # binomial sd over 4000 images: 0.007
    again = augment_with_probability(images, policy, 0.3, torch.Generator().manual_seed(3))
    assert torch.equal(some, again)
    leaf = images[:64].clone().requires_grad_(True)
    augment_with_probability(leaf, policy, 0.5, torch.Generator().manual_seed(1)).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
