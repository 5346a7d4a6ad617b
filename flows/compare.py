"""Comparing metrics across dataset versions: one table, CSV/markdown/PNG, and Prefect artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.reconcile import record_and_reconcile
from flows.stage_params import load_stage_params
from ganlib.config import Params
from ganlib.versions.compare import PER_CLASS_TITLE, Comparison, compare_versions, write_comparison
from tasks.artifacts import png_data_uri


@task(name="compare-versions", cache_policy=NO_CACHE, persist_result=False)
def compare_versions_task(root: Path, revs: list[str], params: Params) -> Comparison:
    return compare_versions(root, revs, params, get_run_logger())


@task(name="write-comparison", cache_policy=NO_CACHE, persist_result=False)
def write_comparison_task(comparison: Comparison, out_dir: Path) -> dict[str, str]:
    written = write_comparison(comparison, out_dir)
    create_table_artifact(key="compare-table", table=comparison.table_rows(), description="metrics per dataset version")
    per_class = comparison.per_class_table_rows()
    if per_class:   # some version's generator was class-conditional: its FID per class across the versions
        create_table_artifact(key="compare-per-class", table=per_class, description=PER_CLASS_TITLE)
    create_markdown_artifact(
        key="compare-report",
        markdown=f"{comparison.to_markdown()}\n\n![metrics per version]({png_data_uri(written['png'])})",
        description=f"comparison of {len(comparison.rows)} versions ({written['csv']})",
    )
    get_run_logger().info("wrote %s", ", ".join(str(p) for p in written.values()))
    return {kind: str(path) for kind, path in written.items()}


def compare_run_name() -> str:
    from prefect.runtime import flow_run

    revs = flow_run.parameters.get("revs") or []
    return f"compare · {', '.join(revs)}" if revs else "compare · default versions"


# Nothing persisted as pickle: a failed run's exception goes to result storage as JSON (flows/reconcile.py says why).
@flow(name="compare", flow_run_name=compare_run_name, persist_result=False, result_serializer="json",
      on_running=[record_and_reconcile])
def compare_flow(params_file: str = "params.yaml", revs: list[str] | None = None,
                 overrides: list[str] | None = None) -> dict[str, Any]:
    """Metrics per dataset version (git revisions, tags, DVC experiments; none = sensible defaults)."""
    params, root = load_stage_params(params_file, overrides or [])
    comparison = compare_versions_task(root, list(revs or []), params)
    return {"files": write_comparison_task(comparison, root / params.base.paths.reports),
            "rows": comparison.records(), "table": comparison.table_rows(),
            # The terminal shows the params that fit (flows.results.compare_result) and these notes under the table.
            "param_keys": list(comparison.param_keys), "footnotes": comparison.footnotes(),
            "skipped": [skipped.line() for skipped in comparison.skipped],
            # FID per class across the versions (empty when no version was scored per class): the table and
            # its n/a reasons for the terminal, every class's numbers for --json.
            "per_class_table": comparison.per_class_table_rows(),
            "per_class_footnotes": comparison.per_class_footnotes(),
            "per_class": comparison.per_class_records() if comparison.classes else []}
