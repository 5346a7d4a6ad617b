"""params.yaml contract: every mistake is an error that names the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from ganlib.config import (
    ARCHITECTURE_RESOLUTIONS, STAGE_PARAMS, ParamsError, load_params, params_fingerprint, select_params,
    write_resolved_params,
)


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


# --------------------------------------------------------------------------- strict types (issue 18, item 6)


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        ("lr_g", '"1e-3"', "quoted text"),       # a number as quoted text: refused, not read as 0.001
        ("kimg", '"48"', "quoted text"),
        ("batch_size", '"32"', "quoted text"),   # an int as text
        ("batch_size", "32.5", "valid integer"),  # a float for an int: refused, not truncated
        ("kimg", "true", "valid number"),        # a bool is not a number
        ("kimg", ".inf", "finite number"),
        ("lr_d", ".nan", "finite number"),
        ("schedule_kimg", "-.inf", "finite number"),
    ],
)
def test_a_value_of_the_wrong_type_or_not_finite_is_refused_in_the_file_and_in_set(tmp_path, key, text, problem):
    original = (REPO_ROOT / "params.yaml").read_text()
    assert f"\n  {key}: " in original
    path = tmp_path / "params.yaml"
    path.write_text(original.replace(f"\n  {key}: ", f"\n  {key}: {text}  # was: ", 1))
    with pytest.raises(ParamsError, match=rf"train\.{key}: .*{problem}"):
        load_params(path)
    with pytest.raises(ParamsError, match=rf"train\.{key}: .*{problem}"):
        load_params(REPO_ROOT / "params.yaml", [f"train.{key}={text}"])


def test_an_int_is_a_float_and_an_unquoted_exponent_is_a_number(tmp_path):
    """`kimg: 48` stays valid (an int for a float field); `lr_g: 1e-3` is 0.001 as DVC reads it, not text."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text().replace("\n  lr_g: 0.0002", "\n  lr_g: 1e-3", 1))
    params = load_params(path, ["train.kimg=48", "train.lr_d=2E-4"])
    assert params.train.lr_g == 0.001 and params.train.lr_d == 0.0002
    assert params.train.kimg == 48.0 and isinstance(params.train.kimg, float)
    assert params.preprocess.background == (255, 255, 255) and params.train.betas == (0.5, 0.999)  # YAML lists


def test_list_valued_tuples_keep_their_items_strict():
    with pytest.raises(ParamsError, match=r"preprocess\.background\.0: .*valid integer"):
        load_params(REPO_ROOT / "params.yaml", ['preprocess.background=["255", 0, 0]'])
    with pytest.raises(ParamsError, match=r"train\.betas"):
        load_params(REPO_ROOT / "params.yaml", ["train.betas=[0.5, 0.999, 0.1]"])


def test_a_resolution_the_architecture_cannot_build_is_refused_at_load():
    with pytest.raises(ParamsError) as err:
        load_params(REPO_ROOT / "params.yaml", ["train.arch=dcgan", "preprocess.resolution=100"])
    message = str(err.value)
    assert "preprocess.resolution: 100" in message and "train.arch: dcgan" in message
    assert "32, 64, 128, 256" in message and "(top level)" not in message
    for arch, resolutions in ARCHITECTURE_RESOLUTIONS.items():
        for resolution in resolutions:
            overrides = [f"train.arch={arch}", f"preprocess.resolution={resolution}", "train.loss=hinge"]
            assert load_params(REPO_ROOT / "params.yaml", overrides).preprocess.resolution == resolution


def test_the_resolution_table_is_the_registrys_and_the_models_and_loads_without_torch():
    """One table (ganlib.config): the registry builds from it; each model module's own check must agree."""
    import subprocess
    import sys

    from ganlib.config import TrainParams
    from ganlib.models import dcgan, r3gan, resnet
    from ganlib.models.registry import ARCHITECTURES

    assert set(ARCHITECTURE_RESOLUTIONS) == set(ARCHITECTURES) == set(TrainParams.model_fields["arch"].annotation.__args__)
    assert {name: arch.resolutions for name, arch in ARCHITECTURES.items()} == ARCHITECTURE_RESOLUTIONS
    assert {"dcgan": dcgan.RESOLUTIONS, "resnet": resnet.RESOLUTIONS, "r3gan": r3gan.RESOLUTIONS} == ARCHITECTURE_RESOLUTIONS
    check = "import sys, ganlib.config; assert 'torch' not in sys.modules, 'ganlib.config imported torch'"
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True)


def test_a_params_file_that_is_not_utf8_is_a_params_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((REPO_ROOT / "params.yaml").read_bytes().replace(b"base:", b"base: \xff", 1))
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte \d+\); save it as UTF-8"):
        load_params(path)
