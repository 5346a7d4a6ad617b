"""One training iteration: `d_steps` discriminator updates, then one generator update.

Each update splits this process's share of the global batch into
microbatches, accumulates their gradients, sums gradients across processes
(ganlib/training/distributed.py) and steps the optimiser. Every random draw of an
update (latents, augmentation, penalty interpolates) comes from a generator
seeded by (seed, iteration, phase, global microbatch index), so a run is a
pure function of its seed and its checkpoint, whatever the number of
processes.

Like the PyTorch DCGAN example, the generator update reuses the fakes of the
last discriminator update instead of running G again: one G forward per
iteration, and D's weights are frozen while G's loss flows through it. A loss
that pairs each fake with a real image (rpgan) also re-reads the reals of that
last discriminator update, so the pairs are the same in both updates.

Class-conditional training: each real microbatch comes with its labels, and
the fakes it is compared with are drawn for the same labels, so fakes follow
the class frequencies of the real batches (train.class_balanced decides those).

The non-finite guard costs no host sync: after each update a device-side
record keeps the first iteration at which a loss or a gradient was not
finite; the training loop reads it every `check_finite_every` iterations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganlib.config import TrainParams
from ganlib.models.registry import build_discriminator, build_generator
from ganlib.training.diffaugment import augment_with_probability
from ganlib.training.distributed import World, all_reduce_sum_
from ganlib.training.ema import ema_beta, make_ema, update_ema
from ganlib.training.losses import gan_loss, gradient_penalty, r1_penalty, r2_penalty
from ganlib.training.schedule import Scheduled, scheduled_values

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Rows of NonFiniteRecord.first_step, in the order a failure is reported.
CHECKS = ("discriminator loss", "discriminator gradient", "generator loss", "generator gradient")


@dataclass
class GanNetworks:
    """Everything with learned or adaptive state; what a checkpoint saves."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler | None
    scaler_d: torch.amp.GradScaler | None

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict() if self.scaler_g else None,
            "scaler_d": self.scaler_d.state_dict() if self.scaler_d else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for scaler, saved in ((self.scaler_g, state["scaler_g"]), (self.scaler_d, state["scaler_d"])):
            if scaler is not None and saved is not None:
                scaler.load_state_dict(saved)


def build_networks(cfg: TrainParams, resolution: int, device: torch.device, seed: int, n_classes: int = 0) -> GanNetworks:
    """Fresh networks (initialised from `seed`), their EMA copy, optimisers and AMP scalers on `device`.

    n_classes > 0: class-conditional G and D (ganlib/models/conditioning.py)."""
    torch.manual_seed(seed)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G = build_generator(cfg, resolution, n_classes).to(device=device, memory_format=memory_format)
    D = build_discriminator(cfg, resolution, n_classes).to(device=device, memory_format=memory_format)
    # Fused Adam: one kernel per step on CUDA, vectorised on CPU; unavailable elsewhere.
    fused = device.type in ("cuda", "cpu") or None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=fused)
    fp16 = cfg.precision == "fp16"
    return GanNetworks(
        G=G, D=D, G_ema=make_ema(G), opt_g=opt_g, opt_d=opt_d,
        scaler_g=torch.amp.GradScaler(device.type) if fp16 else None,
        scaler_d=torch.amp.GradScaler(device.type) if fp16 else None,
    )


class NonFiniteRecord:
    """Device-side: the first iteration at which each of CHECKS was not finite (-1: never)."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((len(CHECKS),), -1, dtype=torch.int64, device=device)

    def note(self, row: int, finite: torch.Tensor, iteration: int) -> None:
        current = self.first_step[row]
        self.first_step[row] = torch.where((current < 0) & ~finite, iteration, current)

    def first_failure(self) -> tuple[int, str] | None:
        """(iteration, what) of the earliest non-finite value; a host sync."""
        steps = self.first_step.tolist()
        failures = [(step, row) for row, step in enumerate(steps) if step >= 0]
        if not failures:
            return None
        step, row = min(failures)  # at the same step, a loss is reported before its gradient
        return step, CHECKS[row]


class GanStep:
    def __init__(self, nets: GanNetworks, cfg: TrainParams, seed: int, device: torch.device, world: World) -> None:
        self.nets, self.cfg, self.seed, self.device, self.world = nets, cfg, seed, device, world
        self.loss = gan_loss(cfg.loss)
        self.microbatches_total = cfg.batch_size // cfg.microbatch
        self.rounds = self.microbatches_total // world.size
        self.rng = torch.Generator(device=device)
        self.nonfinite = NonFiniteRecord(device)
        # Running sums for the tick report: d loss, g loss, penalty, and their counts; skipped fp16 steps.
        self.totals = torch.zeros(7, dtype=torch.float64, device=device)
        self.gamma_scale = 1.0  # the R1/R2 schedule's factor for the current iteration
        self.augment_p = cfg.augment_p  # the augmentation probability of the current iteration
        self.g_forward = torch.compile(nets.G) if cfg.compile else nets.G
        self.d_forward = torch.compile(nets.D) if cfg.compile else nets.D

    def my_microbatches(self) -> range:
        """Global microbatch indices this process handles in each update."""
        return range(self.world.rank * self.rounds, (self.world.rank + 1) * self.rounds)

    def run(
        self, iteration: int, reals_per_d_step: list[list[torch.Tensor]], images_seen: int,
        labels_per_d_step: list[list[torch.Tensor]] | None = None,
    ) -> None:
        """One iteration; `reals_per_d_step[d][r]` is the real microbatch of D step d, round r.

        `images_seen`: real images shown once this iteration is done. `labels_per_d_step[d][r]`:
        the class labels of that microbatch (class-conditional networks only).
        """
        images_per_iteration = self.cfg.batch_size * self.cfg.d_steps
        scheduled = scheduled_values(self.cfg, max(images_seen - images_per_iteration, 0))
        self._apply_schedule(scheduled)
        if labels_per_d_step is None:
            labels_per_d_step = [[None] * len(reals) for reals in reals_per_d_step]
        fakes: list[torch.Tensor] = []
        for d_index, (reals, labels) in enumerate(zip(reals_per_d_step, labels_per_d_step)):
            last = d_index == len(reals_per_d_step) - 1
            fakes = self._discriminator_update(iteration, d_index, reals, labels, keep_fakes=last)
        self._generator_update(iteration, fakes, reals_per_d_step[-1], labels_per_d_step[-1])
        beta = ema_beta(images_per_iteration, images_seen, scheduled.ema_halflife_kimg, self.cfg.ema_rampup)
        update_ema(self.nets.G_ema, self.nets.G, beta)

    def take_totals(self) -> dict[str, float]:
        """Mean losses since the last call (one host sync), then reset."""
        d_sum, d_n, g_sum, g_n, reg_sum, reg_n, skipped = self.totals.tolist()
        self.totals.zero_()
        return {
            "loss_d": d_sum / d_n if d_n else float("nan"),
            "loss_g": g_sum / g_n if g_n else float("nan"),
            "penalty": reg_sum / reg_n if reg_n else 0.0,
            "skipped_steps": int(skipped),
        }

    # ------------------------------------------------------------------ phases

    def _discriminator_update(
        self, iteration: int, d_index: int, reals: list[torch.Tensor], labels: list[torch.Tensor | None],
        keep_fakes: bool,
    ) -> list[torch.Tensor]:
        cfg, nets = self.cfg, self.nets
        d_counter = iteration * cfg.d_steps + d_index
        # Lazy regularisation: R1 and R2 every r1_interval-th step, weighted by the interval.
        regularise = d_counter % cfg.r1_interval == cfg.r1_interval - 1
        apply_r1 = cfg.r1_gamma > 0 and regularise
        apply_r2 = cfg.r2_gamma > 0 and regularise
        nets.opt_d.zero_grad(set_to_none=True)
        terms = torch.zeros(2, device=self.device)  # loss, penalty: microbatch means summed
        grad_scale = _current_scale(nets.scaler_d, self.device)
        fakes = []
        for real, y, microbatch in zip(reals, labels, self.my_microbatches()):
            self._seed(iteration, d_index, microbatch)
            z = torch.randn(real.shape[0], cfg.z_dim, device=self.device, generator=self.rng)
            with torch.set_grad_enabled(keep_fakes), self._autocast():
                fake = self.g_forward(z, y)
            real = real.detach().requires_grad_(apply_r1)
            # R2 differentiates D at the fakes: a leaf of its own, so no gradient reaches G.
            fake_input = fake.detach().requires_grad_(apply_r2)
            with self._autocast():
                real_logits = self.d_forward(self._augment(real), y)
                fake_logits = self.d_forward(self._augment(fake_input), y)
                loss = self.loss.discriminator(real_logits.float(), fake_logits.float())
            # Penalties outside autocast: fp32 arithmetic on a gradient taken at the fp16 loss scale.
            penalty = torch.zeros((), device=self.device)
            if cfg.loss == "wgan-gp":
                penalty = penalty + gradient_penalty(
                    lambda images, y=y: self._d_logits(images, y), real, fake, cfg.gp_weight, self.rng, grad_scale)
            if apply_r1:
                gamma = cfg.r1_gamma * self.gamma_scale * cfg.r1_interval
                penalty = penalty + r1_penalty(real_logits, real, gamma, grad_scale)
            if apply_r2:
                gamma = cfg.r2_gamma * self.gamma_scale * cfg.r1_interval
                penalty = penalty + r2_penalty(fake_logits, fake_input, gamma, grad_scale)
            self._backward((loss + penalty) / self.microbatches_total, nets.scaler_d)
            terms += torch.stack([loss.detach(), penalty.detach()]) / self.microbatches_total
            if keep_fakes:
                fakes.append(fake)
        self._reduce_check_step(nets.D, nets.opt_d, nets.scaler_d, terms, iteration, row=0)
        self.totals[0] += terms[0].double()
        self.totals[1] += 1
        if cfg.loss == "wgan-gp" or apply_r1 or apply_r2:
            # An fp16 penalty that overflowed at the loss scale belongs to a skipped step: not averaged.
            penalty_finite = terms[1].isfinite()
            self.totals[4] += torch.where(penalty_finite, terms[1], 0.0).double()
            self.totals[5] += penalty_finite.double()
        return fakes

    def _generator_update(
        self, iteration: int, fakes: list[torch.Tensor], reals: list[torch.Tensor], labels: list[torch.Tensor | None],
    ) -> None:
        """`fakes`, `reals`, `labels`: the microbatches of the last discriminator update (the pairs of rpgan)."""
        nets = self.nets
        nets.opt_g.zero_grad(set_to_none=True)
        nets.D.requires_grad_(False)  # G's loss flows through D; D's weight gradients are not needed
        terms = torch.zeros(1, device=self.device)
        try:
            for fake, real, y, microbatch in zip(fakes, reals, labels, self.my_microbatches()):
                self._seed(iteration, self.cfg.d_steps, microbatch)
                with self._autocast():
                    fake_logits = self.d_forward(self._augment(fake), y).float()
                    real_logits = None
                    if self.loss.pairs_real_in_g:
                        # Augmented after the fakes, from the same seeded stream: deterministic.
                        with torch.no_grad():
                            real_logits = self.d_forward(self._augment(real), y).float()
                    loss = self.loss.generator(fake_logits, real_logits)
                self._backward(loss / self.microbatches_total, nets.scaler_g)
                terms += loss.detach() / self.microbatches_total
        finally:
            nets.D.requires_grad_(True)
        self._reduce_check_step(nets.G, nets.opt_g, nets.scaler_g, terms, iteration, row=2)
        self.totals[2] += terms[0].double()
        self.totals[3] += 1

    # ------------------------------------------------------------------ helpers

    def _apply_schedule(self, scheduled: Scheduled) -> None:
        # Set from the images shown at every iteration (never accumulated), so a resumed run
        # has the values of an uninterrupted one whatever its optimiser state recorded.
        for optimizer, base_lr in ((self.nets.opt_g, self.cfg.lr_g), (self.nets.opt_d, self.cfg.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = base_lr * scheduled.lr_scale
                group["betas"] = (self.cfg.betas[0], scheduled.beta2)
        self.gamma_scale = scheduled.gamma_scale
        self.augment_p = scheduled.augment_p

    def _seed(self, iteration: int, phase: int, microbatch: int) -> None:
        words = np.random.SeedSequence([self.seed, iteration, phase, microbatch]).generate_state(2)
        self.rng.manual_seed(int(words[0]) << 32 | int(words[1]))

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES.get(self.cfg.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _d_logits(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with self._autocast():
            return self.d_forward(images, labels)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return augment_with_probability(images, self.cfg.diffaugment, self.augment_p, self.rng)

    @staticmethod
    def _backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _reduce_check_step(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        terms: torch.Tensor,
        iteration: int,
        row: int,
    ) -> None:
        """Sum gradients and loss terms over processes, record non-finite values, step the optimiser."""
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # a parameter this loss did not reach still takes part in the sum
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        if self.world.size > 1:
            flat = torch.cat([g.reshape(-1) for g in grads] + [terms.to(grads[0].dtype)])
            all_reduce_sum_(flat, self.world)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view(g.shape))
                offset += g.numel()
            terms.copy_(flat[offset:])
        grads_finite = torch.stack(torch._foreach_norm(grads)).isfinite().all()
        if scaler is None:
            self.nonfinite.note(row, terms.isfinite().all(), iteration)
            self.nonfinite.note(row + 1, grads_finite, iteration)
            optimizer.step()
        else:
            # fp16: an overflowing gradient is expected now and then; the scaler skips that step.
            # A penalty (terms[1:]) is built from a gradient at the loss scale and overflows with it,
            # so only the loss itself (terms[0]) is held to the non-finite guard.
            self.nonfinite.note(row, terms[0].isfinite(), iteration)
            self.totals[6] += (~grads_finite).double()
            scaler.step(optimizer)
            scaler.update()


def _current_scale(scaler: torch.amp.GradScaler | None, device: torch.device) -> torch.Tensor | None:
    """The fp16 loss scale as a device tensor (no host sync, unlike GradScaler.get_scale), or None."""
    return None if scaler is None else scaler.scale(torch.ones((), device=device))
