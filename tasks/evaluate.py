"""Prefect task around ganlib.metrics: score the EMA generator, publish the metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganlib.config import Params
from ganlib.io.provenance import short_md5
from ganlib.metrics.evaluate import evaluate_generator


@task(name="evaluate-generator", cache_policy=NO_CACHE, persist_result=False)
def evaluate_generator_task(params: Params, root: Path) -> dict[str, Any]:
    report = evaluate_generator(params, get_run_logger(), root)
    create_table_artifact(
        key="evaluation-metrics",
        table=report.report_rows(),
        description=(
            f"FID/KID/IS of the EMA generator at {report.checkpoint_kimg} kimg on dataset "
            f"{short_md5(report.data_md5)}: {report.n_samples} samples, extractor {report.extractor}"
        ),
    )
    per_class = report.per_class_rows()
    if per_class:   # a class-conditional generator: its scores class by class
        create_table_artifact(key="evaluation-per-class", table=per_class, description=report.per_class_title())
    return report.to_json()
