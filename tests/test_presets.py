"""The presets in presets.yaml: each is a valid configuration that builds its networks; bad ones are named."""

from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from flows.cli import main as scenegan
from flows.stage import expand_preset
from ganlib.config import ParamsError, apply_overrides, load_params, preset_overrides
from ganlib.models.registry import architecture
from ganlib.training.step import build_networks

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = REPO_ROOT / "params.yaml"


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_each_r3gan_preset_is_sized_for_its_resolution_and_builds(resolution):
    name = f"r3gan-{resolution}"
    params = load_params(PARAMS, preset_overrides(load_params(PARAMS), name))
    assert params.preprocess.resolution == resolution and params.train.arch == "r3gan"
    assert params.train.loss == "rpgan" and params.train.r1_gamma == params.train.r2_gamma > 0
    assert params.train.r1_interval == 1 and params.train.betas[0] == 0.0 and params.train.schedule == "cosine"
    architecture(params.train.arch, resolution)  # the architecture supports the resolution
    nets = build_networks(params.train.model_copy(update={"precision": "fp32", "channels_last": False}),
                          resolution, torch.device("cpu"), seed=0)
    with torch.no_grad():
        image = nets.G(torch.randn(1, params.train.z_dim))
        assert image.shape == (1, 3, resolution, resolution)
        assert nets.D(image).shape == (1,)


def test_gamma_grows_with_resolution():
    gammas = [load_params(PARAMS, preset_overrides(load_params(PARAMS), f"r3gan-{r}")).train.r1_gamma
              for r in (32, 64, 128, 256)]
    assert gammas == sorted(gammas) and gammas[0] < gammas[-1]


def write_params_with_presets(tmp_path: Path, presets: dict | str | None) -> Path:
    """A copy of params.yaml with `presets` (a mapping, or the file's text) beside it as presets.yaml; None: no file."""
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS, path)
    if presets is not None:
        (tmp_path / "presets.yaml").write_text(presets if isinstance(presets, str) else yaml.safe_dump(presets))
    return path


@pytest.mark.parametrize(("preset", "named"), [
    ({"train.widht": 3}, r"presets\.yaml: preset 'bad': unknown key 'train\.widht'"),
    ({"train.r1_gamma": -1}, r"(?s)presets\.yaml: preset 'bad'.*train\.r1_gamma"),
    ({"train.arch": "dcgan", "train.loss": "rpgan"},
     r"(?s)presets\.yaml: preset 'bad'.*rpgan needs a discriminator without BatchNorm"),
])
def test_a_preset_that_does_not_apply_is_refused_at_load_with_its_name(tmp_path, preset, named):
    path = write_params_with_presets(tmp_path, {"good": {"train.kimg": 1}, "bad": preset})
    with pytest.raises(ParamsError, match=named):
        load_params(path)


@pytest.mark.parametrize(("presets", "named"), [
    ("quick: {train.kimg: [1,\n", r"presets\.yaml: not valid YAML"),
    ("- train.kimg: 1\n", r"presets\.yaml: expected a mapping of preset names"),
    ("quick: 16\n", r"presets\.yaml: preset 'quick': expected a mapping of `section\.key: value` overrides"),
])
def test_a_broken_presets_file_is_named(tmp_path, presets, named):
    with pytest.raises(ParamsError, match=named):
        load_params(write_params_with_presets(tmp_path, presets))


def test_presets_live_beside_the_params_file_and_are_never_params(tmp_path):
    # No presets.yaml: the params load; only asking for a preset is an error, naming the file to create.
    params = load_params(write_params_with_presets(tmp_path, None))
    assert params.presets == {}
    with pytest.raises(ParamsError, match=r"--preset 'quick': no presets file .*presets\.yaml"):
        preset_overrides(params, "quick")
    # An older params.yaml with its `presets` section: told where the section goes (DVC would show it as params).
    raw = yaml.safe_load(PARAMS.read_text())
    raw["presets"] = {"quick": {"train.kimg": 16}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"`presets` is not a params\.yaml section any more.*presets\.yaml"):
        load_params(tmp_path / "params.yaml")
    # A preset is a recipe, not a setting: records of what a run used never hold them.
    assert "presets" not in load_params(PARAMS).model_dump()


def test_set_wins_over_the_preset_and_an_unknown_preset_lists_the_known_ones():
    args = argparse.Namespace(params=PARAMS, preset="r3gan-64", overrides=["train.g_width=16"])
    expand_preset(args)
    params = load_params(PARAMS, args.overrides)
    assert params.train.g_width == 16 and params.train.arch == "r3gan"
    with pytest.raises(ParamsError, match=r"--preset 'r3gan-65'.*known: quick, r3gan-128, r3gan-256, r3gan-32, r3gan-64"):
        expand_preset(argparse.Namespace(params=PARAMS, preset="r3gan-65", overrides=[]))


def test_scenegan_preset_prints_dvc_flags_that_give_the_preset_back(capsys):
    assert scenegan(["preset", "--params", str(PARAMS), "r3gan-128"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[::2] == ["-S"] * (len(words) // 2)
    raw = yaml.safe_load(PARAMS.read_text())
    expressions = words[1::2]
    # one shell word each, also for lists: `$(scenegan preset ...)` splits on spaces
    assert all(" " not in expression for expression in expressions)
    applied = apply_overrides(raw, expressions)
    for dotted, value in yaml.safe_load((REPO_ROOT / "presets.yaml").read_text())["r3gan-128"].items():
        section, key = dotted.split(".")
        assert applied[section][key] == value, dotted
