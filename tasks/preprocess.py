"""Prefect task around ganlib.data.preprocess: runs it with the run logger, publishes the QA report."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganlib.config import Params
from ganlib.data.dataset import QA_REPORT_FILE
from ganlib.data.preprocess import PreparedSummary, prepare_dataset

MAX_REJECT_ROWS = 200  # the UI table stays readable; the full list is in qa_report.json


@task(name="prepare-dataset", cache_policy=NO_CACHE, persist_result=False)
def prepare_dataset_task(params: Params, root: Path) -> dict[str, Any]:
    summary = prepare_dataset(params, get_run_logger(), root)
    _publish_qa_artifacts(summary)
    return {**asdict(summary), "out_dir": str(summary.out_dir)}


def _class_lines(summary: PreparedSummary) -> list[str]:
    """The classes and every warning, for the summary: what a person checks before training on labels."""
    if summary.class_counts:
        counts = ", ".join(f"{name} **{count}**" for name, count in summary.class_counts.items())
        lines = [f"- classes ({len(summary.class_counts)}, from {summary.labels_source}): {counts}"]
    else:
        lines = ["- classes: none (the images carry no labels; see preprocess.labels)"]
    if summary.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {warning}" for warning in summary.warnings]
    return lines


def _publish_qa_artifacts(summary: PreparedSummary) -> None:
    lines = [
        f"### Prepared dataset `{summary.out_dir}`",
        "",
        f"- accepted **{summary.count}** images at {summary.resolution} px"
        f" (scanned {summary.scanned}, rejected {summary.rejected})",
        f"- dataset md5 (data.dvc): `{summary.data_md5}`",
    ]
    lines += [f"- rejected as {reason}: {count}" for reason, count in sorted(summary.rejects_by_reason.items())]
    lines.append(f"- near-duplicate groups: {summary.near_duplicate_groups}"
                 f" ({summary.near_duplicate_copies} images look like an earlier one)")
    lines += _class_lines(summary)
    create_markdown_artifact(key="preprocess-summary", markdown="\n".join(lines), description="Preprocessing summary")
    if summary.class_counts:
        create_table_artifact(
            key="preprocess-classes",
            table=[{"class": name, "images": str(count), "share": f"{count / summary.count:.1%}"}
                   for name, count in summary.class_counts.items()],
            description=f"Images per class ({len(summary.class_counts)} classes, from {summary.labels_source})",
        )
    if not (summary.rejected or summary.near_duplicate_groups):
        return
    report = json.loads((summary.out_dir / QA_REPORT_FILE).read_text())
    if summary.rejected:
        rows = [{k: str(v) for k, v in row.items()} for row in report["rejects"][:MAX_REJECT_ROWS]]
        create_table_artifact(
            key="preprocess-rejects",
            table=rows,
            description=f"Rejected input files ({summary.rejected} in all; full list in {QA_REPORT_FILE})",
        )
    if summary.near_duplicate_groups:
        near = report["near_duplicates"]
        rows = [{"kept": group["kept"], "copy": copy["path"], "distance": str(copy["distance"]), "action": near["action"]}
                for group in near["listing"] for copy in group["copies"]][:MAX_REJECT_ROWS]
        create_table_artifact(
            key="preprocess-near-duplicates",
            table=rows,
            description=f"Near-duplicate images ({near['copies']} in {near['groups']} groups, pHash within "
                        f"{near['max_distance']} bits; {'left out' if near['action'] == 'drop' else 'kept'}; full list in {QA_REPORT_FILE})",
        )
