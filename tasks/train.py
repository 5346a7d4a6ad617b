"""Prefect task around ganlib.training.loop: progress in the run log and as artifacts.

With train.nproc > 1, or train.nnodes > 1, the stage runs under torchrun (one
process per GPU, on each node); the task launches this node's torchrun and
streams its log, since the ranks must be separate processes. With one process
the trainer runs in the task itself, and so it does when the task's process
already is a rank (torchrun or a scheduler started it: RANK/WORLD_SIZE set),
which must not launch ranks of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch.distributed as dist
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from flows.parent_death import launcher_command
from ganlib.config import Params
from ganlib.errors import UserFacingError
from ganlib.io.logged_command import run_logged
from ganlib.logs import Logger
from ganlib.stages.train import train_with_curves
from ganlib.training.launch import launch_command, launched_as_rank, needs_launcher, world_from_env
from ganlib.training.loop import TickReport
from tasks.artifacts import png_data_uri

PREVIEW_PX = 256  # the embedded grid preview stays small: artifacts live in the Prefect database


@task(name="train-gan", cache_policy=NO_CACHE, persist_result=False)
def train_gan_task(params: Params, root: Path, params_file: str, overrides: Sequence[str]) -> dict[str, Any]:
    log = get_run_logger()
    if not launched_as_rank() and needs_launcher(params.train):
        _run_torchrun(params, Path(params_file), root, overrides, log)
        return {"nproc": params.train.nproc, "nnodes": params.train.nnodes,
                "out_dir": str(root / params.base.paths.train)}
    world = world_from_env()
    on_tick = None
    if world.is_main:  # rank 0 reports; the other ranks only train
        progress_id = create_progress_artifact(progress=0.0, key="train-progress", description="training progress (%)")

        def on_tick(report: TickReport) -> None:
            _publish_tick(report, progress_id)
    try:
        summary = train_with_curves(params, log, root, on_tick=on_tick, world=world)
    finally:
        if dist.is_initialized():  # as a rank: leave the process group cleanly (the launcher's children do)
            dist.destroy_process_group()
    return {"kimg": summary.kimg, "steps": summary.steps, "generator": str(summary.generator_path),
            "resumed_from": str(summary.resumed_from) if summary.resumed_from else None}


def _publish_tick(report: TickReport, progress_id) -> None:
    update_progress_artifact(progress_id, progress=min(100.0, 100.0 * report.kimg / report.total_kimg))
    losses = "  ".join(f"{name} {value:.3f}" for name, value in sorted(report.losses.items()))
    create_markdown_artifact(
        key="train-samples",
        markdown=(
            f"### EMA generator at {report.kimg:.1f} / {report.total_kimg:g} kimg\n\n"
            f"{report.img_per_s:.0f} img/s · {losses} · diversity ratio {report.diversity_ratio:.2f}\n\n"
            f"![samples at {report.kimg:.1f} kimg]({png_data_uri(report.grid_path, PREVIEW_PX)})"
        ),
        description=f"fixed-seed samples at {report.kimg:.1f} kimg",
    )


def _run_torchrun(params: Params, params_file: Path, root: Path, overrides: Sequence[str], log: Logger) -> None:
    command = launch_command(params.train, params_file, root, overrides)
    log.info("launching this node's %d training process(es): %s", params.train.nproc, " ".join(command))
    # Wrapped so that the kernel stops torchrun (which stops its ranks) even if this process is
    # SIGKILLed and no cleanup runs; run_logged stops them on every exception it sees.
    status, _ = run_logged(launcher_command(command), root, log)
    if status != 0:
        raise UserFacingError(f"distributed training exited with status {status}; see the log above")
