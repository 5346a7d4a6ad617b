"""dvc.yaml names what each stage runs and reads: exactly the files of its code, and exactly its params.

A file a stage imports but does not depend on is a change `dvc repro` would
not notice (it reports the stage unchanged and keeps stale outputs); a param
a stage does not read re-runs it for nothing.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import REPO_ROOT

from flows.stage import STAGE_FLOWS
from ganlib.config import STAGE_PARAMS
from ganlib.io.source import import_closure

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def entry_modules(stage: str) -> list[str]:
    """What `python -m flows.stage <stage>` runs: the dispatcher, the stage's flow module (imported
    by name, so not visible to the static closure) and, for training, the torchrun entry point
    that tasks/train.py launches as a child process."""
    flow_module = STAGE_FLOWS[stage].partition(":")[0]
    return ["flows.stage", flow_module] + (["ganlib.stages.train"] if stage == "train" else [])


# Files a stage reads rather than imports, so the import closure cannot see them.
READ_FILES = {"publish": ["ganlib/publish/templates", "presets.yaml"]}


def code_deps(stage: str) -> list[PurePosixPath]:
    """The stage's dvc.yaml deps that are code in the repository (templated ones are data; READ_FILES apart)."""
    return [PurePosixPath(dep) for dep in STAGES[stage]["deps"]
            if "${" not in dep and dep not in READ_FILES.get(stage, [])]


@pytest.mark.parametrize("stage", sorted(READ_FILES))
def test_stage_depends_on_the_files_it_reads(stage):
    """Editing the gallery or model-card template, or the presets the card names, republishes on `dvc repro`."""
    for path in READ_FILES[stage]:
        assert path in STAGES[stage]["deps"] and (REPO_ROOT / path).exists(), path


def test_every_stage_of_the_pipeline_is_checked():
    assert set(STAGES) == set(STAGE_FLOWS) == set(STAGE_PARAMS)


@pytest.mark.parametrize("stage", sorted(STAGE_FLOWS))
def test_stage_code_deps_are_exactly_the_files_it_runs(stage):
    """Both ways: a file the stage runs but does not list is a change DVC misses; a listed file it
    does not run (the weights downloader, say) re-runs the stage for nothing."""
    runs = [path.as_posix() for path in import_closure(entry_modules(stage), REPO_ROOT)]
    listed = [dep.as_posix() for dep in code_deps(stage)]
    missing, extra = sorted(set(runs) - set(listed)), sorted(set(listed) - set(runs))
    assert not missing and not extra, (
        f"dvc.yaml stage {stage!r}: deps must be exactly the files it runs.\n"
        f"  runs but not listed: {', '.join(missing) or '-'}\n  listed but not run: {', '.join(extra) or '-'}\n"
        "Its code deps, to paste under deps (after the data deps):\n"
        + "".join(f"      - {path}\n" for path in runs)
    )


def test_training_depends_on_the_one_extractor_file_the_fid_curve_reads():
    """Not the weights folder: installing IS or DINOv2 weights there must not re-run training."""
    from ganlib.metrics.weight_files import FID_INCEPTION_FILE

    data_deps = [dep for dep in STAGES["train"]["deps"] if "${" in dep]
    assert "${base.paths.weights}/" + FID_INCEPTION_FILE in data_deps
    assert "${base.paths.weights}" not in data_deps


@pytest.mark.parametrize("stage", sorted(STAGE_FLOWS))
def test_stage_code_deps_exist(stage):
    missing = [dep.as_posix() for dep in code_deps(stage) if not (REPO_ROOT / Path(dep)).exists()]
    assert not missing, f"dvc.yaml stage {stage!r} depends on paths that do not exist: {', '.join(missing)}"


@pytest.mark.parametrize("stage", sorted(STAGE_FLOWS))
def test_stage_params_are_what_the_stage_records(stage):
    listed = STAGES[stage]["params"]
    assert all(isinstance(key, str) for key in listed), f"dvc.yaml stage {stage!r}: params from other files"
    assert listed == list(STAGE_PARAMS[stage]), (
        f"dvc.yaml stage {stage!r} params differ from ganlib/config.py STAGE_PARAMS[{stage!r}] "
        "(what the stage records in its params.json): keep the two lists the same"
    )
    assert "base" not in listed, f"dvc.yaml stage {stage!r}: list the base keys it uses, not all of base"
