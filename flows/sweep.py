"""Parameter sweeps: each parameter set a DVC experiment on the current dataset version, ranked by FID.

The sets and their validation, the experiment names and the ranking are
ganlib/versions/sweep.py's; running one set is tasks/sweep.py's. Each set is
a task run named after its settings ("lr_g=1e-4 r1_gamma=0.5"); they all
start at once and wait for a slot of their device's global concurrency limit
(`jobs` slots). A failed run is reported in the table, and the others go on;
only when every run fails does the flow fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.runtime import flow_run
from prefect.states import State

from flows.compare import compare_versions_task
from flows.reconcile import record_and_reconcile
from flows.retrain import put_interpreter_first_on_path
from flows.stage import check_stage_devices
from flows.stage_params import dataset_tag, load_stage_params
from ganlib.config import Params
from ganlib.io.provenance import DATA_DVC_FILE, dvc_tracked_md5
from ganlib.versions import sweep
from ganlib.versions.compare import Comparison
from ganlib.versions.retrain import utc_now
from tasks.sweep import ensure_sweep_limits, sweep_limit_name, sweep_run_task, write_sweep_report_task


def sweep_run_name() -> str:
    params_file = flow_run.parameters.get("params_file", "params.yaml")
    return f"sweep · {dataset_tag(Path(params_file).resolve().parent)}"


# As the other flows: no results persisted, a failure's exception as JSON, killed runs crashed on start.
@flow(name="sweep", flow_run_name=sweep_run_name, persist_result=False, result_serializer="json",
      on_running=[record_and_reconcile])
def sweep_flow(params_file: str = "params.yaml", overrides: list[str] | None = None, grid: list[str] | None = None,
               runs: list[str] | None = None, jobs: int = 1) -> dict[str, Any]:
    """Run a grid (`grid`: section.key=v1,v2 ...) or list (`runs`) of parameter sets as DVC experiments."""
    log = get_run_logger()
    if jobs < 1:  # a limit of no slots would leave every run waiting for ever
        raise sweep.SweepError(f"sweep: jobs must be at least 1, got {jobs}")
    overrides = list(overrides or [])
    params, root = load_stage_params(params_file, overrides)
    plan = sweep.plan_sweep(params_file, overrides, grid or [], runs or [])
    for run_params in plan.params:  # a missing GPU fails here, before any experiment starts
        check_stage_devices(run_params, ["train", "evaluate"])
    put_interpreter_first_on_path()
    data_md5 = dvc_tracked_md5(root / DATA_DVC_FILE)
    now = utc_now()
    named = plan.named_runs(data_md5, now)
    limits = [sweep_limit_name(run.device) for run in named]
    ensure_sweep_limits(limits, jobs)
    log.info("%d runs on dataset %s, %d at a time per device (%s)", len(named), data_md5, jobs,
             ", ".join(sorted(set(limits))))

    futures = sweep_run_task.map(named, params=unmapped(params), root=unmapped(root), limit=limits)
    failures: dict[str, str] = {}
    for run, future in zip(named, futures):
        future.wait()
        if not future.state.is_completed():
            failures[run.name] = sweep.failure_reason(_state_message(future.state))
            log.warning("run %d (%s) failed: %s", run.index, run.label, failures[run.name])
    finished = [run.name for run in named if run.name not in failures]

    comparison = (compare_versions_task(root, finished, _sweep_compare_params(params)) if finished
                  else Comparison((), (), tuple(params.compare.plot_metrics)))
    ranked = sweep.rank_runs(comparison, named, failures, data_md5)
    stem = sweep.report_stem(now)
    summary = sweep.summary_lines(ranked, named, overrides, data_md5)
    markdown = sweep.sweep_markdown(ranked, sweep.sweep_title(stem, len(named)), summary)
    files = write_sweep_report_task(ranked, markdown, root / params.base.paths.reports, stem)
    if not finished:
        raise sweep.SweepError(f"every run of the sweep failed ({len(named)}); first: "
                               f"{next(iter(failures.values()))}; the report: {files['markdown']}")
    return {
        "experiments": [{"name": run.name, "label": run.label, "settings": dict(run.settings),
                         "status": "failed" if run.name in failures else "finished",
                         "reason": failures.get(run.name)} for run in named],
        "data_md5": data_md5, "best": ranked.best, "within_noise": list(ranked.within_noise),
        "failed": dict(ranked.failed), "summary": summary, "swept_keys": list(plan.keys),
        "rows": ranked.comparison.records(), "table": ranked.comparison.table_rows(),
        "footnotes": ranked.comparison.footnotes(), "files": files,
    }


def _sweep_compare_params(params: Params) -> Params:
    """compare's settings for one dataset version's runs: no drift (the same data) and no retrain history."""
    return params.model_copy(update={
        "compare": params.compare.model_copy(update={"drift": False, "include_history": False})})


def _state_message(state: State) -> str:
    """A failed task run's error: its exception's message where Prefect kept it, else the state's message."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # the result could not be read back: the message says what happened
        error = None
    return str(error) if isinstance(error, BaseException) else (state.message or state.name or "failed")
