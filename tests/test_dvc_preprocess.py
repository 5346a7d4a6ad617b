"""`dvc repro` runs the preprocess stage's Prefect flow; a second repro runs nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from conftest import TINY_DATA, add_default_dataset, run, set_params

from ganlib.data.dataset import open_prepared
from ganlib.io.provenance import dvc_tracked_md5


def dvc(root: Path, *args: str, env: dict) -> str:
    return run([str(Path(sys.executable).with_name("dvc")), *args], root, env).stdout


def flow_run_names(flow_name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC, limit=200
            )
            return [r.name for r in runs if r.state and r.state.is_completed()]

    return asyncio.run(names())


def test_repro_preprocess_then_nothing_to_do(project_copy, subprocess_env):
    set_params(project_copy / "params.yaml", TINY_DATA)
    add_default_dataset(project_copy)
    md5 = dvc_tracked_md5(project_copy / "data.dvc")
    assert md5

    first = dvc(project_copy, "repro", "preprocess", env=subprocess_env)
    assert "Running stage 'preprocess'" in first
    prepared = open_prepared(project_copy / "data/prepared")
    assert prepared.count == 48 and prepared.resolution == 32
    assert prepared.data_md5 == md5
    # The default dataset's class folders (preprocess.labels: auto): one label per image.
    assert prepared.class_names == ("dawn", "day", "dusk", "night") and prepared.labels.shape == (48,)
    # The stage was a named flow run on the Prefect server the test points it at.
    assert f"preprocess · data {md5[:8]}" in flow_run_names("preprocess")

    second = dvc(project_copy, "repro", "preprocess", env=subprocess_env)
    assert "Running stage" not in second
    assert "didn't change" in second

    status = json.loads(dvc(project_copy, "status", "--json", env=subprocess_env) or "{}")
    assert "preprocess" not in status


def test_changing_worker_count_does_not_rerun(project_copy, subprocess_env):
    set_params(project_copy / "params.yaml", TINY_DATA)
    add_default_dataset(project_copy)
    dvc(project_copy, "repro", "preprocess", env=subprocess_env)
    set_params(project_copy / "params.yaml", ["preprocess.workers=2"])
    assert "Running stage" not in dvc(project_copy, "repro", "preprocess", env=subprocess_env)
    set_params(project_copy / "params.yaml", ["preprocess.max_aspect_ratio=2.0"])
    assert "Running stage 'preprocess'" in dvc(project_copy, "repro", "preprocess", env=subprocess_env)


def test_preprocess_flow_reports_rejects_as_artifacts(project_copy, prefect_api_url):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.preprocess import preprocess_flow

    set_params(project_copy / "params.yaml", TINY_DATA)
    add_default_dataset(project_copy)
    (project_copy / "data/raw/notes.txt").write_text("not an image")  # beside the class folders: no class
    (project_copy / "data/raw/day/tiny.png").write_bytes(
        next((project_copy / "data/raw").rglob("scene-000000.png")).read_bytes()[:40])

    result = preprocess_flow(params_file=str(project_copy / "params.yaml"))
    assert result["rejected"] == 2 and result["count"] == 48
    assert result["rejects_by_reason"] == {"no_label": 1, "not_an_image": 1}
    assert result["labels_source"] == "folders" and sum(result["class_counts"].values()) == 48

    async def latest(key: str):
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50)
            return max(found, key=lambda a: a.created)

    summary = asyncio.run(latest("preprocess-summary")).data
    assert "rejected as " in summary and str(result["count"]) in summary
    assert "classes (4, from folders): dawn **" in summary
    assert "fewer than 50 images" in summary  # 48 tiny images in 4 classes: the small-class warning
    classes = asyncio.run(latest("preprocess-classes")).data
    assert "night" in str(classes) and str(result["class_counts"]["night"]) in str(classes)
    table = asyncio.run(latest("preprocess-rejects")).data
    assert "notes.txt" in str(table) and "tiny.png" in str(table)
