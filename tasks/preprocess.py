"""Prefect task around ganlib.preprocess: runs it with the run logger, publishes the QA report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganlib.config import Params
from ganlib.dataset import QA_REPORT_FILE, open_prepared
from ganlib.preprocess import prepare_dataset

MAX_REJECT_ROWS = 200  # the UI table stays readable; the full list is in qa_report.json


@task(name="prepare-dataset", cache_policy=NO_CACHE)
def prepare_dataset_task(params: Params, root: Path) -> dict[str, Any]:
    prepare_dataset(params, get_run_logger(), root)
    prepared = open_prepared(root / params.base.paths.prepared)
    _publish_qa_artifacts(prepared.root, prepared.manifest)
    return prepared.manifest


def _publish_qa_artifacts(prepared_dir: Path, manifest: dict[str, Any]) -> None:
    report = json.loads((prepared_dir / QA_REPORT_FILE).read_text())
    rejects = report.get("rejects", report) if isinstance(report, dict) else report
    by_reason = manifest.get("rejected_by_reason", {})
    lines = [
        f"### Prepared dataset `{prepared_dir}`",
        "",
        f"- accepted **{manifest.get('count')}** images at {manifest.get('resolution')} px"
        f" (scanned {manifest.get('scanned')}, rejected {manifest.get('rejected')})",
        f"- dataset md5 (data.dvc): `{manifest.get('data_md5')}`",
    ]
    lines += [f"- rejected as {reason}: {count}" for reason, count in sorted(by_reason.items())]
    create_markdown_artifact(key="preprocess-summary", markdown="\n".join(lines), description="Preprocessing summary")
    if rejects:
        rows = [{k: str(v) for k, v in row.items()} for row in rejects[:MAX_REJECT_ROWS]]
        create_table_artifact(
            key="preprocess-rejects",
            table=rows,
            description=f"Rejected input files ({len(rejects)} in all; full list in {QA_REPORT_FILE})",
        )
