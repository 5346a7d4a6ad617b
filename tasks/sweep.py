"""Prefect tasks around ganlib.versions.sweep: one DVC experiment per parameter set, the ranked report.

Each run holds a slot of a global concurrency limit named after the device
it trains on (scenegan-sweep-cuda, scenegan-sweep-cpu), so that however many
sweeps are started, by whom, at most that many experiments share a device.
Each run is its own `dvc exp run --temp` process rather than `dvc queue
start -j N`, which with several jobs fails silently (DVC issues 10673, 10562).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from ganlib.config import Params
from ganlib.versions import retrain
from ganlib.versions.sweep import RankedSweep, SweepRun, write_sweep_report

SWEEP_CONCURRENCY_PREFIX = "scenegan-sweep"


def sweep_limit_name(device_setting: str) -> str:
    """The global concurrency limit of the device a run trains on: `auto` resolved on this machine."""
    from ganlib.hardware.device import resolve_device  # torch: only once a sweep really starts

    return f"{SWEEP_CONCURRENCY_PREFIX}-{resolve_device(device_setting).type}"


def ensure_sweep_limits(names: Iterable[str], jobs: int) -> None:
    """Create each limit, or set its slots, to `jobs`: the last sweep started decides how many run at once."""
    with get_client(sync_client=True) as client:
        for name in sorted(set(names)):
            client.upsert_global_concurrency_limit_by_name(name, jobs)


@task(name="sweep-run", task_run_name="{run.label}", cache_policy=NO_CACHE, persist_result=False)
def sweep_run_task(run: SweepRun, params: Params, root: Path, limit: str) -> str:
    """Run one parameter set as DVC experiment `run.name` once a slot of `limit` is free; its name."""
    log = get_run_logger()
    log.info("run %d (%s): waiting for a slot of the concurrency limit %s", run.index, run.label, limit)
    with concurrency(limit, occupy=1, strict=True):
        log.info("experiment %s: dvc exp run with %s", run.name, " ".join(run.set_params) or "params.yaml as it is")
        retrain.run_experiment(params, root, run.name, log, run.set_params, wait_for_lock=True)
    return run.name


@task(name="write-sweep-report", cache_policy=NO_CACHE, persist_result=False)
def write_sweep_report_task(ranked: RankedSweep, markdown: str, reports: Path, stem: str) -> dict[str, str]:
    written = write_sweep_report(markdown, ranked.comparison, reports, stem)
    count = len(ranked.comparison.rows)
    create_markdown_artifact(key="sweep", markdown=markdown, description=f"{stem}: {count} runs ranked by FID")
    create_table_artifact(key="sweep-table", table=ranked.comparison.table_rows(),
                          description=f"{stem}: {count} runs ranked by FID, best first")
    get_run_logger().info("wrote %s", ", ".join(str(path) for path in written.values()))
    return {kind: str(path) for kind, path in written.items()}
