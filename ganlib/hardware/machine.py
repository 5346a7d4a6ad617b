"""What machine this is, in the terms that decide which speed settings pay.

bf16 autocast doubles CPU training speed where the CPU has native bf16
(AVX512-BF16, AMX) and halves it where oneDNN emulates it, while
`torch.ops.mkldnn._is_mkldnn_bf16_supported()` says True on both. So the
flags are recorded (benchmarks print them, the probe cache is keyed by them),
but choices are made by measuring, never by reading them.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# CPU flags that change which precision and layout are fastest.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


@dataclass(frozen=True)
class MachineInfo:
    device_type: str          # cpu | cuda | mps
    name: str                 # CPU model or GPU name
    flags: tuple[str, ...]    # the SPEED_FLAGS this CPU has (empty for a GPU)
    cpus: int                 # CPUs this process may run on (its affinity), whatever the thread count
    threads: int              # torch intra-op threads of this process (torchrun sets 1 per process)
    torch_version: str

    def describe(self) -> str:
        """One line for logs and benchmark headers."""
        if self.device_type != "cpu":
            return f"{self.name} ({self.device_type}), torch {self.torch_version}"
        flags = ", ".join(self.flags) if self.flags else "none of " + "/".join(SPEED_FLAGS)
        return (f"CPU {self.name}, {self.cpus} CPUs, {self.threads} torch threads, flags: {flags}, "
                f"torch {self.torch_version}")

    def cache_key(self) -> str:
        """Identifies the machine for cached measurements: a new CPU, CPU count or torch measures again.

        Not the thread count: torchrun sets OMP_NUM_THREADS=1 in each process, so keying by it
        made a `train.nproc: 2` run re-measure, and possibly choose another precision (another
        run identity), on the machine where a 1-process run had already measured. Whether bf16
        pays is a property of the CPU's instructions, which threads do not change. The fields
        are named, so a key written before this format never matches one written after it.
        """
        return "|".join((self.device_type, self.name, "flags=" + ",".join(self.flags), f"cpus={self.cpus}",
                         f"torch={self.torch_version}"))


def describe_machine(device: torch.device) -> MachineInfo:
    threads, cpus = torch.get_num_threads(), available_cpus()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return MachineInfo("cuda", name, (), cpus, threads, torch.__version__)
    if device.type == "mps":
        return MachineInfo("mps", platform.machine(), (), cpus, threads, torch.__version__)
    model, flags = cpu_model_and_flags()
    return MachineInfo("cpu", model, tuple(f for f in SPEED_FLAGS if f in flags), cpus, threads,
                       torch.__version__)


def available_cpus() -> int:
    """How many CPUs this process may run on: its affinity set where the OS has one, else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """The CPU model name and its feature flags (Linux); elsewhere the platform's processor string."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model or platform.machine() or "unknown CPU", flags


def machine_cache_dir() -> Path:
    """Per-user, per-machine cache outside any repository: $SCENEGAN_CACHE_DIR, else $XDG_CACHE_HOME/scenegan."""
    if os.environ.get("SCENEGAN_CACHE_DIR"):
        return Path(os.environ["SCENEGAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scenegan"
