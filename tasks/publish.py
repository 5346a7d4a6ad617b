"""Prefect task around ganlib.publish.run: publish (or skip, by the gate) the gallery; write the model package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ganlib.config import Params
from ganlib.publish.gate import FidComparison, comparison_markdown
from ganlib.publish.run import model_package_markdown, run_publish_stage, walk_markdown


# Writing to a remote target (s3://...) can fail transiently; a retry is safe
# because a release only becomes visible when its pointer is written last.
@task(name="publish-gallery", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=10)
def publish_gallery_task(params: Params, root: Path) -> dict[str, Any]:
    stage = run_publish_stage(params, get_run_logger(), root)
    report = stage.gallery
    if report.status == "published":
        link = report.index if "://" in report.index else Path(report.index).resolve().as_uri()
        create_link_artifact(key="gallery", link=link, link_text="sample gallery", description=report.reason)
    else:
        create_markdown_artifact(
            key="gallery",
            markdown=f"**Publish skipped**: {report.reason}\n\nThe gallery at `{report.index}` is unchanged.",
            description="publish gate",
        )
    # The gate's numbers: both FIDs and bands, recorded and re-scored, the settings, the rule.
    comparison = FidComparison(**report.comparison) if report.comparison is not None else None
    create_markdown_artifact(
        key="publish-gate",
        markdown=comparison_markdown(report.status, report.reason, comparison),
        description="publish gate: FIDs compared, noise bands, settings and the rule applied",
    )
    create_markdown_artifact(key="model-package", markdown=model_package_markdown(stage),
                             description="the trained generator as safetensors + ONNX, with its model card")
    if (walk := walk_markdown(report)) is not None:
        create_markdown_artifact(key="latent-walk", markdown=walk, description="the gallery's latent walk video")
    return report.as_record()
