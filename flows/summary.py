"""What `make demo` prints at the end: the gallery, the metrics table, the run in the UI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ganlib.config import Params
from ganlib.metrics.report import METRICS_FILE, EvaluationReport, read_evaluation, render_table

STAGE_FLOW_NAMES = ["pipeline", "publish", "evaluate", "train", "preprocess"]


def pipeline_summary(params: Params, root: Path) -> str:
    lines = [_gallery_line(params, root), "", *_metrics_lines(params, root), "", _ui_line()]
    return "\n".join(lines)


def _gallery_line(params: Params, root: Path) -> str:
    record_path = root / params.base.paths.publish_record
    if not record_path.is_file():
        return f"Gallery: not published yet (no {params.base.paths.publish_record}); run `dvc repro publish`"
    record = json.loads(record_path.read_text())
    index = record["index"]
    where = index if "://" in index else str(Path(index).resolve())
    if record["status"] == "published":
        return f"Gallery: {where}  (release {record['release']}, {record['checkpoint_kimg']:g} kimg)"
    return f"Gallery: {where}  (unchanged: {record['reason']})"


def _metrics_lines(params: Params, root: Path) -> list[str]:
    path = root / params.base.paths.evaluate / METRICS_FILE
    record = read_evaluation(path.parent)   # metrics.json with the provenance in evaluation.json beside it
    if record is None:
        return [f"Metrics: none yet (no {path}); run `dvc repro evaluate`"]
    report = EvaluationReport.from_json(record)
    per_class = report.per_class_section()   # a class-conditional generator's scores class by class
    return [f"Metrics ({path.relative_to(root) if path.is_relative_to(root) else path}):",
            render_table(report.report_rows()), *([""] + per_class if per_class else [])]


def _ui_line() -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if not PREFECT_API_URL.value():
        return ("Prefect UI: the runs are in Prefect's database; `make ui` shows them at http://127.0.0.1:4200/runs "
                "(to watch runs live, keep `make ui` running: `make demo` reports to it).")
    try:
        run_id = asyncio.run(_latest_flow_run_id())
    except Exception as exc:  # an unreachable server must not fail the demo's last line
        return f"Prefect UI: could not reach {PREFECT_API_URL.value()} ({type(exc).__name__})"
    ui = (PREFECT_UI_URL.value() or PREFECT_API_URL.value().removesuffix("/api")).rstrip("/")
    return f"Prefect UI: {ui}/runs/flow-run/{run_id}" if run_id else f"Prefect UI: {ui}/runs"


async def _latest_flow_run_id() -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=STAGE_FLOW_NAMES)),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return str(runs[0].id) if runs else None
