"""`evaluate.precision: auto` and `evaluate.channels_last: auto`: the Inception's speed settings, measured.

Feature extraction is most of an evaluation's time on a CPU (about 8-20
images/s here). bf16 autocast is faster on CPUs with native bf16 and slower
where it is emulated, and channels_last helps this network on some CPUs, so
the candidates are timed on this machine (ganlib.hardware.probe) and fp32 is
kept unless bf16 is more than 10% faster. bf16 features are not the same
numbers: they moved the FID of 96 vs 96 scenes by 0.02% (76.438 -> 76.425),
well inside the sampling noise of any FID, but the precision is part of the
extractor's identity (reports, the reference cache key, the publish gate),
so FIDs computed in different precisions are never silently mixed. Only the
FID Inception on a CPU has a choice; everything else runs in fp32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ganlib.config import EvaluateParams
from ganlib.hardware.machine import describe_machine, machine_cache_dir
from ganlib.hardware.probe import candidate_name, probed_choice, speed_candidates, time_candidates
from ganlib.logs import Logger
from ganlib.metrics.extractors import FID_INCEPTION, ExtractorSpec, build_extractor, resolve_extractor

PROBE_BATCH = 4     # images per timed call (the 299-px network dominates, not the batch size)
PROBE_ROUNDS = 3
FP32_MARGIN = 0.10  # bf16 must beat fp32 by more than this


def extractor_for_device(settings: EvaluateParams, weights_dir: Path, root: Path, device: torch.device, log: Logger) -> ExtractorSpec:
    """The configured extractor (resolve_extractor) with its speed settings resolved for `device`, logged."""
    spec, how = with_measured_speed(resolve_extractor(settings, weights_dir, root), settings, device, machine_cache_dir())
    log.info("features: %s in %s, channels_last %s (%s)", spec.name, spec.precision, spec.channels_last, how)
    return spec


def with_measured_speed(spec: ExtractorSpec, settings: EvaluateParams, device: torch.device, cache_dir: Path) -> tuple[ExtractorSpec, str]:
    """`spec` with concrete precision and channels_last, and one line saying how they were chosen."""
    precision_auto, layout_auto = settings.precision == "auto", settings.channels_last == "auto"
    if spec.name != FID_INCEPTION or device.type != "cpu":
        chosen = dataclasses.replace(spec, precision="fp32", channels_last=False if layout_auto else bool(settings.channels_last))
        return chosen, f"{spec.name} on {device.type}: fp32"
    if not (precision_auto or layout_auto):
        chosen = _with_settings(spec, settings.precision, bool(settings.channels_last))
        return chosen, "as set in evaluate.precision / evaluate.channels_last"
    candidates = speed_candidates(settings.precision, settings.channels_last)
    # fp32 is the exact one; layouts differ in speed only, so the margin favours the previous default.
    preferred = candidate_name("fp32" if precision_auto else settings.precision,
                               True if layout_auto else bool(settings.channels_last))
    machine = describe_machine(device)
    result = probed_choice(
        cache_dir, machine.describe(), machine.cache_key(),
        f"extractor={spec.name} weights={spec.weights_digest} candidates={','.join(sorted(candidates))}",
        lambda: _time_extraction(spec, device, candidates), prefer=preferred, margin=FP32_MARGIN,
    )
    precision, layout = candidates[result.choice]
    return _with_settings(spec, precision, layout), f"measured: {result.summary()}"


def _with_settings(spec: ExtractorSpec, precision: str, channels_last: bool) -> ExtractorSpec:
    description = spec.description if precision == "fp32" else f"{spec.description}, {precision} autocast"
    return dataclasses.replace(spec, precision=precision, channels_last=channels_last, description=description)


def _time_extraction(spec: ExtractorSpec, device: torch.device, candidates: dict[str, tuple[str, bool]]) -> dict[str, float]:
    images = torch.randint(0, 256, (PROBE_BATCH, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    runs = {}
    for name, (precision, layout) in candidates.items():
        extractor = build_extractor(dataclasses.replace(spec, precision=precision, channels_last=layout), [spec.feature_layer], device)

        def run(extractor=extractor) -> None:
            with torch.no_grad():
                extractor(images.to(device))

        runs[name] = run
    return {name: seconds / PROBE_BATCH for name, seconds in time_candidates(runs, PROBE_ROUNDS).items()}
