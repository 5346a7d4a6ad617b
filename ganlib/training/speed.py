"""`train.precision: auto` and `train.channels_last: auto`, resolved for this machine.

On CUDA the rule is known: bf16 autocast where the GPU supports it (else fp16
with a gradient scaler), channels_last on. On a CPU nothing can be assumed:
bf16 is about 2x fp32 with native bf16 (AVX512-BF16/AMX) and about 0.5x
where it is emulated, and channels_last helps some networks and not others.
So the CPU candidates are timed: a few real GAN steps of the configured
networks on the real microbatch shape, each candidate built from the same
seed, interleaved (ganlib.hardware.probe). fp32 is kept unless another
setting is more than 10% faster. The choice is cached per machine and
workload, so the run's identity (which includes the precision) is stable
from one run, or resume, to the next.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ganlib.config import TrainParams
from ganlib.hardware.machine import describe_machine
from ganlib.hardware.probe import ProbeResult, candidate_name, probed_choice, speed_candidates, time_candidates
from ganlib.training.distributed import SINGLE_PROCESS
from ganlib.training.step import GanStep, build_networks

PROBE_ROUNDS = 3          # timed calls per candidate (after one warm-up call)
PROBE_STEPS_PER_CALL = 2  # GAN iterations per timed call
FP32_MARGIN = 0.10        # another setting must beat fp32/NCHW by more than this


@dataclass(frozen=True)
class TrainSpeed:
    """The concrete settings a run uses, and how they were chosen."""

    precision: str
    channels_last: bool
    how: str                            # one line for the run log
    probe: ProbeResult | None = None    # None: nothing was measured (explicit settings or a fixed rule)

    def as_record(self) -> dict:
        record: dict = {"precision": self.precision, "channels_last": self.channels_last, "how": self.how}
        if self.probe is not None:
            load = self.probe.load
            record["probe"] = {"choice": self.probe.choice, "seconds": self.probe.seconds,
                               "machine": self.probe.machine, "cached": self.probe.cached,
                               "load": None if load is None else {"load_1min": load.load_1min, "cpus": load.cpus}}
        return record


def resolve_train_speed(cfg: TrainParams, resolution: int, device: torch.device, seed: int, cache_dir: Path) -> TrainSpeed:
    """Concrete precision and channels_last for `cfg` on `device`; explicit settings always win."""
    precision_auto, layout_auto = cfg.precision == "auto", cfg.channels_last == "auto"
    if not (precision_auto or layout_auto):
        return TrainSpeed(cfg.precision, bool(cfg.channels_last), "as set in train.precision / train.channels_last")
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        precision = ("bf16" if bf16 else "fp16") if precision_auto else cfg.precision
        return TrainSpeed(precision, True if layout_auto else bool(cfg.channels_last),
                          f"CUDA rule: {'bf16 supported' if bf16 else 'no bf16: fp16 with a gradient scaler'}, channels_last")
    if device.type != "cpu":
        return TrainSpeed("fp32" if precision_auto else cfg.precision,
                          False if layout_auto else bool(cfg.channels_last), f"{device.type}: fp32, NCHW")
    candidates = speed_candidates(cfg.precision, cfg.channels_last)
    machine = describe_machine(device)
    preferred = candidate_name("fp32" if precision_auto else cfg.precision, False if layout_auto else bool(cfg.channels_last))
    result = probed_choice(
        cache_dir, machine.describe(), machine.cache_key(), workload_key(cfg, resolution, sorted(candidates)),
        lambda: _time_settings(cfg, resolution, device, seed, candidates), prefer=preferred, margin=FP32_MARGIN,
    )
    precision, layout = candidates[result.choice]
    return TrainSpeed(precision, layout, f"measured: {result.summary()}", result)


def workload_key(cfg: TrainParams, resolution: int, candidates: list[str]) -> str:
    """What the timing depends on besides the machine: the networks, the microbatch and the step's phases.

    Not the process layout or its thread count (train.nproc, OMP_NUM_THREADS): the precision
    chosen is part of the run's identity, which the process layout must not change, so a
    `train.nproc: 2` run takes the choice a 1-process run measured on this machine (and the
    other way round) instead of measuring again with one thread per process.
    """
    parts = dict(
        arch=cfg.arch, resolution=resolution, z_dim=cfg.z_dim, g_width=cfg.g_width, d_width=cfg.d_width,
        microbatch=cfg.microbatch, loss=cfg.loss, d_steps=cfg.d_steps, r1=cfg.r1_gamma > 0,
        r2=cfg.r2_gamma > 0,
        diffaugment=",".join(cfg.diffaugment), candidates=",".join(candidates),
    )
    return " ".join(f"{key}={value}" for key, value in parts.items())


def _time_settings(
    cfg: TrainParams, resolution: int, device: torch.device, seed: int, candidates: dict[str, tuple[str, bool]]
) -> dict[str, float]:
    runs = {name: _steps_of(cfg, resolution, device, seed, precision, layout)
            for name, (precision, layout) in candidates.items()}
    # Per GAN iteration, so the log reads as seconds per step.
    return {name: seconds / PROBE_STEPS_PER_CALL for name, seconds in time_candidates(runs, PROBE_ROUNDS).items()}


def _steps_of(
    cfg: TrainParams, resolution: int, device: torch.device, seed: int, precision: str, channels_last: bool
) -> Callable[[], None]:
    """A callable running PROBE_STEPS_PER_CALL GAN iterations with these settings on random real images."""
    # compile is for long CUDA runs; timing it here would measure compilation.
    probe_cfg = cfg.model_copy(update={"precision": precision, "channels_last": channels_last, "compile": False,
                                       "batch_size": cfg.microbatch})
    nets = build_networks(probe_cfg, resolution, device, seed)
    step = GanStep(nets, probe_cfg, seed, device, SINGLE_PROCESS)
    generator = torch.Generator().manual_seed(seed)
    real = torch.rand(cfg.microbatch, 3, resolution, resolution, generator=generator).mul_(2).sub_(1).to(device)
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    reals = [[real] for _ in range(cfg.d_steps)]
    counter = iter(itertools.count())

    def run() -> None:
        for _ in range(PROBE_STEPS_PER_CALL):
            step.run(next(counter), reals, images_seen=0)

    return run
