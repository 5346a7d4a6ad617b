"""dvc.yaml names what each stage runs and reads: every file of its code, and exactly its params.

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


def code_deps(stage: str) -> list[PurePosixPath]:
    """The stage's dvc.yaml deps that are paths in the repository (templated ones are data)."""
    return [PurePosixPath(dep) for dep in STAGES[stage]["deps"] if "${" not in dep]


def test_every_stage_of_the_pipeline_is_checked():
    assert set(STAGES) == set(STAGE_FLOWS) == set(STAGE_PARAMS)


@pytest.mark.parametrize("stage", sorted(STAGE_FLOWS))
def test_stage_depends_on_every_file_it_runs(stage):
    deps = code_deps(stage)
    uncovered = [
        path.as_posix()
        for path in import_closure(entry_modules(stage), REPO_ROOT)
        if not any(PurePosixPath(path.as_posix()) == dep or dep in PurePosixPath(path.as_posix()).parents
                   for dep in deps)
    ]
    assert not uncovered, (
        f"dvc.yaml stage {stage!r} runs these files but does not list them (or a directory holding them) "
        f"under deps, so editing them would not re-run it: {', '.join(uncovered)}"
    )


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
