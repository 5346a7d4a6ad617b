"""Stages depend on the `base` keys they use, not on all of `base`: real `dvc` in a temporary git repo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run, set_params

from ganlib.config import STAGE_PARAMS


def dvc(root: Path, *args: str, env: dict) -> str:
    return run([str(Path(sys.executable).with_name("dvc")), *args], root, env).stdout


def changed_stages(root: Path, env: dict) -> set[str]:
    return set(json.loads(dvc(root, "status", "--json", env=env) or "{}"))


def recorded_keys(params_json: Path) -> set[str]:
    def flatten(tree: dict, prefix: str = "") -> set[str]:
        keys: set[str] = set()
        for key, value in tree.items():
            keys |= flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return keys

    return flatten(json.loads(params_json.read_text()))


@pytest.mark.slow  # on the tiny project as `dvc repro` left it (conftest): a few dvc status calls
def test_an_unrelated_base_key_reruns_nothing_and_is_not_recorded(reproduced_project, subprocess_env):
    root = reproduced_project
    assert not {"preprocess", "train"} & changed_stages(root, subprocess_env)

    # What each stage recorded is what it depends on: no device, no other stage's paths.
    assert recorded_keys(root / "data/prepared/params.json") == set(STAGE_PARAMS["preprocess"])
    trained = recorded_keys(root / "runs/train/params.json")
    assert {key for key in trained if key.startswith("base.")} == {
        key for key in STAGE_PARAMS["train"] if key.startswith("base.")}
    assert "base.device" in trained and "base.paths.reports" not in trained

    # Where comparison reports go concerns neither stage.
    set_params(root / "params.yaml", ["base.paths.reports=elsewhere/reports"])
    assert not {"preprocess", "train"} & changed_stages(root, subprocess_env)

    # The device can change training's numbers, never preprocessing's.
    set_params(root / "params.yaml", ["base.device=cpu"])
    changed = changed_stages(root, subprocess_env)
    assert "preprocess" not in changed and "train" in changed
    assert "Running stage 'preprocess'" not in dvc(root, "repro", "--dry", "train", env=subprocess_env)

