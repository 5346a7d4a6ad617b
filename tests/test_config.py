"""params.yaml contract: every mistake is an error that names the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from ganlib.config import STAGE_PARAMS, ParamsError, load_params, params_fingerprint, select_params, write_resolved_params


def write_params(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_load():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.preprocess.resolution > 0
    assert params.base.paths.raw == "data/raw"


def test_unknown_key_names_file_and_key(tmp_path):
    path = write_params(tmp_path, lambda d: d["train"].update(lr_gen=0.1))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(path) in str(err.value)
    assert "train.lr_gen" in str(err.value) and "unknown key" in str(err.value)


def test_missing_key_is_an_error(tmp_path):
    path = write_params(tmp_path, lambda d: d["preprocess"].pop("resolution"))
    with pytest.raises(ParamsError, match=r"preprocess\.resolution: missing key"):
        load_params(path)


def test_wrong_type_and_out_of_range(tmp_path):
    def mutate(d):
        d["preprocess"]["resolution"] = "big"
        d["base"]["seed"] = -1
        d["base"]["device"] = "tpu"

    path = write_params(tmp_path, mutate)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert "3 problem(s)" in message
    for key in ("preprocess.resolution", "base.seed", "base.device"):
        assert key in message


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ParamsError, match="parameter file not found"):
        load_params(tmp_path / "nope.yaml")


def test_overrides_are_typed_and_validated():
    params = load_params(REPO_ROOT / "params.yaml", ["train.kimg=0.5", "train.diffaugment=[color, cutout]"])
    assert params.train.kimg == 0.5
    assert params.train.diffaugment == ["color", "cutout"]

    with pytest.raises(ParamsError, match=r"unknown key 'train\.kimgs'"):
        load_params(REPO_ROOT / "params.yaml", ["train.kimgs=1"])
    with pytest.raises(ParamsError, match="unknown section 'trian'"):
        load_params(REPO_ROOT / "params.yaml", ["trian.kimg=1"])
    with pytest.raises(ParamsError, match=r"(?s)--set train\.kimg=-3.*train\.kimg"):
        load_params(REPO_ROOT / "params.yaml", ["train.kimg=-3"])
    with pytest.raises(ParamsError, match="expected section.key=value"):
        load_params(REPO_ROOT / "params.yaml", ["kimg"])


def test_params_are_immutable():
    params = load_params(REPO_ROOT / "params.yaml")
    with pytest.raises(Exception):
        params.train.kimg = 3  # type: ignore[misc]


def test_fingerprint_tracks_only_the_named_sections():
    base = load_params(REPO_ROOT / "params.yaml")
    changed_eval = load_params(REPO_ROOT / "params.yaml", ["evaluate.n_samples=123"])
    changed_train = load_params(REPO_ROOT / "params.yaml", ["train.lr_g=0.001"])
    assert params_fingerprint(base, "base", "train") == params_fingerprint(changed_eval, "base", "train")
    assert params_fingerprint(base, "base", "train") != params_fingerprint(changed_train, "base", "train")
    longer = load_params(REPO_ROOT / "params.yaml", ["train.kimg=999"])
    assert params_fingerprint(base, "train", exclude=["train.kimg"]) == params_fingerprint(
        longer, "train", exclude=["train.kimg"]
    )


def test_resolved_params_round_trip(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml", ["train.kimg=7"])
    written = write_resolved_params(params, tmp_path)
    reloaded = yaml.safe_load(written.read_text())  # JSON is YAML
    assert reloaded["train"]["kimg"] == 7


@pytest.mark.parametrize(
    ("overrides", "named", "fix"),
    [
        (["train.arch=resnet", "train.compile=true", "train.r1_gamma=1"], "train.compile", "train.compile: false"),
        (["train.arch=resnet", "train.compile=true", "train.loss=wgan-gp"], "train.loss: wgan-gp", "train.compile: false"),
        (["train.arch=dcgan", "train.r1_gamma=0.5"], "train.r1_gamma", "train.arch: resnet"),
        (["train.arch=dcgan", "train.loss=wgan-gp"], "train.loss: wgan-gp", "train.arch: resnet"),
        (["train.arch=dcgan", "train.loss=rpgan"], "train.loss: rpgan", "train.arch: r3gan"),
        (["train.arch=dcgan", "train.r2_gamma=0.5"], "train.r2_gamma", "train.arch: resnet or r3gan"),
        (["train.arch=r3gan", "train.compile=true", "train.r2_gamma=1"], "train.r2_gamma", "train.compile: false"),
        (["train.r2_gamma=-1"], "train.r2_gamma", "greater than or equal to 0"),
    ],
)
def test_combinations_training_cannot_run_are_refused_at_load(overrides, named, fix):
    with pytest.raises(ParamsError) as err:
        load_params(REPO_ROOT / "params.yaml", overrides)
    message = str(err.value)
    assert named in message and fix in message and "params.yaml" in message


def test_the_refused_combinations_have_allowed_neighbours():
    for overrides in (
        ["train.arch=resnet", "train.r1_gamma=1"],
        ["train.arch=resnet", "train.loss=wgan-gp"],
        ["train.arch=dcgan", "train.compile=true"],
        ["train.arch=resnet", "train.compile=true", "train.loss=hinge"],
        ["train.arch=r3gan", "train.loss=rpgan", "train.r1_gamma=0.1", "train.r2_gamma=0.1"],
        ["train.arch=r3gan", "train.compile=true", "train.loss=rpgan"],
    ):
        load_params(REPO_ROOT / "params.yaml", overrides)


def test_a_stage_records_only_the_params_it_reads(tmp_path):
    base = load_params(REPO_ROOT / "params.yaml")
    unrelated = load_params(REPO_ROOT / "params.yaml", ["base.device=cpu", "base.paths.reports=elsewhere",
                                                        "base.seed=7", "preprocess.workers=3", "train.kimg=1"])
    first = write_resolved_params(base, tmp_path / "first", STAGE_PARAMS["preprocess"])
    second = write_resolved_params(unrelated, tmp_path / "second", STAGE_PARAMS["preprocess"])
    assert first.read_bytes() == second.read_bytes()
    recorded = json.loads(first.read_text())
    assert recorded["base"] == {"paths": {"raw": "data/raw", "prepared": "data/prepared"}}
    assert set(recorded) == {"base", "preprocess"} and "workers" not in recorded["preprocess"]
    assert select_params(base, ["train", "evaluate.seed"]) == {
        "train": base.train.model_dump(mode="json"), "evaluate": {"seed": base.evaluate.seed}}
