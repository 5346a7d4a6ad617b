"""The model package: loads without scenegan, ONNX matches torch, the card is complete, failures keep the old one.

A real (tiny, random-weight) dcgan generator.pt stands where the train stage
writes it, with the records the preprocess, train and evaluate stages write
beside it; the publish stage runs on it as `dvc repro` runs it (run_publish_stage).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO_ROOT, load_test_params

from ganlib.errors import UserFacingError
from ganlib.models.generator_file import GeneratorInfo, load_generator, save_generator
from ganlib.models.registry import ARCHITECTURES, rebuild_generator
from ganlib.models.sampling import fixed_latents
from ganlib.publish import model_package
from ganlib.publish.model_card import model_card_context, render_model_card
from ganlib.publish.model_package import (
    CARD_FILE,
    CONFIG_FILE,
    ModelPackageError,
    foreign_imports,
    matching_preset,
    package_config,
)
from ganlib.publish.onnx_export import ONNX_TOLERANCE, OnnxExportError, export_checked_onnx
from ganlib.publish.run import run_publish_stage
from ganlib.publish.run_records import read_training_record, step_seconds
from ganlib.training.ema import recalibrate_batchnorm_

LOG = logging.getLogger("test_model_package")
PATHS = load_test_params().base.paths
BUILD = {"z_dim": 16, "width": 4, "resolution": 32}
KIMG = 1.5
SMALL = ["publish.grid_size=2", "publish.n_samples=3", "publish.interpolation_rows=1", "publish.interpolation_steps=2",
         "publish.batch_size=4", "publish.walk_keyframes=0", "publish.data_licence=CC-BY-4.0 (test photos)"]
# Every key the card reports, as evaluate writes them (ganlib.metrics.report.EvaluationReport.to_json).
FULL_METRICS = {
    "fid": 61.2345, "fid_noise_low": 59.5, "fid_noise_high": 63.25, "fid_noise_resamples": 200, "fid_noise_n": 40,
    "kid_mean": 0.04321, "kid_std": 0.00211, "kid_subset_size": 20, "is_mean": None, "is_std": None,
    "is_unavailable_reason": "no IS weights installed", "precision": 0.611, "recall": 0.322, "density": 0.833,
    "coverage": 0.547, "prdc_k": 5, "memorisation": 0.0625, "memorisation_pixels": 0.05,
    "memorisation_baseline": 0.05, "memorisation_n": 40, "n_samples": 40, "n_reference": 48, "batch_size": 20,
    "seed": 12345, "extractor": "tiny-random-conv", "extractor_description": "a small fixed random network",
    "data_md5": "d" * 32, "dataset_sha256": "e" * 64, "checkpoint_kimg": KIMG, "resolution": 32,
}


CLASSES = ("dawn", "day", "night")


def stand_in_run(
    root: Path, arch: str = "dcgan", weights_seed: int = 0, metrics: dict | None = FULL_METRICS,
    classes: tuple[str, ...] = (),
) -> None:
    """generator.pt and the records the preprocess, train and evaluate stages write, under `root`."""
    build = {**BUILD, "n_classes": len(classes)} if classes else BUILD
    with torch.random.fork_rng():
        torch.manual_seed(weights_seed)
        generator = rebuild_generator(arch, build)
    info = GeneratorInfo(arch=arch, z_dim=16, resolution=32, kimg=KIMG, data_md5="d" * 32, dataset_sha256="e" * 64,
                         params_fingerprint="0123456789abcdef", classes=classes)
    train = root / PATHS.train
    train.mkdir(parents=True, exist_ok=True)
    save_generator(train / "generator.pt", generator, info, build)
    run_record = {"run": {"code_digest": "c0de" * 16, "speed": {"precision": "bf16"}}}
    (train / "params.json").write_text(json.dumps(run_record))
    ticks = [{"kimg": 1.0, "img_per_s": 250.0}, {"kimg": 1.5, "img_per_s": 125.0}]
    (train / "stats.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    prepared = root / PATHS.prepared
    prepared.mkdir(parents=True, exist_ok=True)
    counts = {"count": 48, "scanned": 51, "rejected": 3, "rejects_by_reason": {"too_small": 2, "unreadable": 1},
              "hidden_skipped": 1}
    if classes:  # the gallery draws a conditional model's samples in the data's class proportions: real data
        from test_metrics_support import smooth_images, write_prepared_dataset
        from train_support import write_labels

        write_prepared_dataset(prepared, smooth_images(48, seed=0, resolution=32), data_md5="d" * 32)
        write_labels(prepared, np.arange(48) % len(classes), classes)
        counts = {**json.loads((prepared / "manifest.json").read_text()), **counts}
    (prepared / "manifest.json").write_text(json.dumps(counts))
    qa = {"near_duplicates": {"groups": 2, "copies": 3, "action": "report"}}
    (prepared / "qa_report.json").write_text(json.dumps(qa))
    metrics_path = root / PATHS.evaluate / "metrics.json"
    if metrics is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics))


def stage_params(root: Path, *overrides: str):
    return load_test_params([*SMALL, f"publish.target={root / 'gallery'}", *overrides])


def package_files(root: Path) -> dict[str, bytes]:
    model_dir = root / PATHS.model
    return {path.name: path.read_bytes() for path in sorted(model_dir.iterdir())}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """One publish stage run on the stand-in dcgan (the package under <root>/results/model)."""
    root = tmp_path_factory.mktemp("published")
    stand_in_run(root)
    run_publish_stage(stage_params(root), LOG, root)
    return root


@pytest.fixture(scope="module")
def published_conditional(tmp_path_factory) -> Path:
    """The same, for a class-conditional stand-in."""
    root = tmp_path_factory.mktemp("published-conditional")
    stand_in_run(root, classes=CLASSES)
    run_publish_stage(stage_params(root), LOG, root)
    return root


def torch_images(root: Path, seed: int, n: int, label: int | None = None) -> np.ndarray:
    generator, info = load_generator(root / PATHS.train / "generator.pt", torch.device("cpu"))
    z = fixed_latents(n, info.z_dim, seed)
    with torch.no_grad():
        return (generator(z) if label is None else generator(z, torch.full((n,), label))).numpy()


# ----------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_onnx_output_matches_torch_within_the_stated_tolerance(arch):
    import onnxruntime

    with torch.random.fork_rng():
        torch.manual_seed(0)
        generator = rebuild_generator(arch, BUILD).eval()
    onnx = export_checked_onnx(generator, fixed_latents(8, 16, seed=1), model_package.ONNX_EXPORTERS[arch])
    assert onnx.max_abs_difference <= ONNX_TOLERANCE == onnx.tolerance
    # Independently of the export's own check: other latents, another batch size (the batch axis is dynamic).
    z = fixed_latents(3, 16, seed=2)
    session = onnxruntime.InferenceSession(onnx.data, providers=["CPUExecutionProvider"])
    exported = session.run(["images"], {"z": z.numpy()})[0]
    with torch.no_grad():
        expected = generator(z).numpy()
    assert exported.shape == (3, 3, 32, 32)
    assert np.abs(exported - expected).max() <= ONNX_TOLERANCE


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_conditional_generators_onnx_file_takes_the_labels(arch):
    import onnxruntime

    with torch.random.fork_rng():
        torch.manual_seed(0)
        generator = rebuild_generator(arch, {**BUILD, "n_classes": 3})
        # BatchNorm statistics of its own samples, as training leaves a generator: an untrained DCGAN's
        # default statistics shrink its output to ~1e-6, too small for a class to show above the tolerance.
        recalibrate_batchnorm_(generator, fixed_latents(64, 16, seed=3), batch_size=32)
    generator.eval()
    onnx = export_checked_onnx(generator, fixed_latents(8, 16, seed=1), model_package.ONNX_EXPORTERS[arch],
                               labels=torch.arange(8) % 3)
    session = onnxruntime.InferenceSession(onnx.data, providers=["CPUExecutionProvider"])
    z, labels = fixed_latents(5, 16, seed=2), torch.tensor([2, 2, 0, 1, 2])
    exported = session.run(["images"], {"z": z.numpy(), "labels": labels.numpy()})[0]
    with torch.no_grad():
        expected = generator(z, labels).numpy()
        other_classes = generator(z, (labels + 1) % 3).numpy()
    assert np.abs(exported - expected).max() <= ONNX_TOLERANCE < np.abs(exported - other_classes).max()


def test_an_onnx_file_that_does_not_reproduce_torch_is_refused():
    generator = rebuild_generator("dcgan", BUILD).eval()
    with pytest.raises(OnnxExportError, match=r"differs from torch by up to .* \(tolerance 1e-30\)"):
        export_checked_onnx(generator, fixed_latents(4, 16, seed=0), "torchscript", tolerance=1e-30)


def test_config_records_the_onnx_check_and_the_latent_convention(published):
    config = json.loads((published / PATHS.model / CONFIG_FILE).read_text())
    assert config["onnx"]["max_abs_difference_vs_torch"] <= config["onnx"]["tolerance"] == ONNX_TOLERANCE
    assert config["onnx"]["exporter"] == "torchscript" and config["onnx"]["checked_latents"] == 8
    assert "numpy.random.RandomState(s).randn(n, z_dim)[i]" in config["latent"]["seeded"]
    assert config["output"]["range"] == [-1.0, 1.0] and config["output"]["layout"] == "NCHW"
    assert config["build_kwargs"] == BUILD and config["class_name"] == "DCGANGenerator"
    assert config["dataset"] == {"data_md5": "d" * 32, "prepared_sha256": "e" * 64, "images": 48}
    assert config["code_digest"] == "c0de" * 16 and config["params_fingerprint"] == "0123456789abcdef"
    assert config["kimg"] == KIMG and config["gallery"]["status"] == "published"
    files = package_files(published)
    assert config["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()
                               if name not in (CONFIG_FILE, CARD_FILE)}


# ----------------------------------------------------------------------------- the card's snippet


def card_code_blocks(card: str, heading: str) -> str:
    """The first ```python block after `heading` in the card."""
    section = card[card.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_without_scenegan(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a Python whose sys.path holds only the standard library, site-packages and `cwd`.

    -S skips site, so the editable install's import hook (a .pth file) is
    never installed; -I ignores PYTHONPATH and the user's site directory.
    """
    paths = sysconfig.get_paths()
    clean = [p for p in sys.path if p.startswith(sys.base_prefix) and "site-packages" not in p]
    clean += [paths["purelib"], paths["platlib"], str(cwd)]
    preamble = textwrap.dedent(f"""
        import sys
        sys.path[:] = {clean!r}
        import importlib.util
        assert importlib.util.find_spec("ganlib") is None, "ganlib is importable: the check would prove nothing"
    """)
    return subprocess.run([sys.executable, "-I", "-S", "-c", preamble + code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_cards_snippet_loads_the_weights_into_plain_torch_without_scenegan(published, tmp_path):
    package = tmp_path / "model"
    shutil.copytree(published / PATHS.model, package)   # what a user downloads, away from the repository
    card = (package / CARD_FILE).read_text()
    torch_snippet = card_code_blocks(card, "### Load the weights")
    onnx_snippet = card_code_blocks(card, "### Or run the ONNX file")
    out = tmp_path / "out"
    out.mkdir()
    code = (torch_snippet + f"\nnp.save({str(out / 'torch.npy')!r}, images.numpy())\n"
            f"np.save({str(out / 'pixels.npy')!r}, pixels.numpy())\n"
            + onnx_snippet + f"\nnp.save({str(out / 'onnx.npy')!r}, images)\n")
    result = run_without_scenegan(code, package)
    assert result.returncode == 0, result.stderr

    expected = torch_images(published, seed=0, n=8)
    np.testing.assert_allclose(np.load(out / "torch.npy"), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "onnx.npy"), expected, rtol=0, atol=ONNX_TOLERANCE)
    from ganlib.models.sampling import to_uint8
    assert np.array_equal(np.load(out / "pixels.npy"), to_uint8(torch.from_numpy(expected)).numpy())


def test_a_conditional_models_card_lists_its_classes_and_its_snippets_take_a_label(published_conditional, tmp_path):
    package = tmp_path / "model"
    shutil.copytree(published_conditional / PATHS.model, package)
    config = json.loads((package / CONFIG_FILE).read_text())
    assert config["classes"] == list(CLASSES) and config["build_kwargs"]["n_classes"] == 3
    assert config["onnx"]["labels"]["name"] == "labels"
    card = (package / CARD_FILE).read_text()
    assert "class-conditional" in card and "0 `dawn`, 1 `day`, 2 `night`." in card
    assert "row 1: dawn, row 2: day" in card
    assert_every_field_filled(card)
    out = tmp_path / "out"
    out.mkdir()
    code = (card_code_blocks(card, "### Load the weights") + f"\nnp.save({str(out / 'torch.npy')!r}, images.numpy())\n"
            + card_code_blocks(card, "### Or run the ONNX file") + f"\nnp.save({str(out / 'onnx.npy')!r}, images)\n")
    result = run_without_scenegan(code, package)
    assert result.returncode == 0, result.stderr
    expected = torch_images(published_conditional, seed=0, n=8, label=0)  # the snippets draw class 0, `dawn`
    np.testing.assert_allclose(np.load(out / "torch.npy"), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "onnx.npy"), expected, rtol=0, atol=ONNX_TOLERANCE)


def test_the_clean_interpreter_really_cannot_import_scenegan(tmp_path):
    result = run_without_scenegan("import ganlib\n", tmp_path)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


# ----------------------------------------------------------------------------- the card


# An empty table cell, Python's None, a NaN, the "n/a" of a missing number, a template brace, an empty bracket.
BLANKS = re.compile(r"\|[ \t]*\|(?!-)|\bNone\b|\bnan\b|\bn/a\b|\{\{|\}\}|\(\s*\)|\[\s*\]")


def assert_every_field_filled(card: str) -> None:
    table_rows = [line for line in card.splitlines() if line.startswith("| ") and "---" not in line]
    assert table_rows and all(cell.strip() for row in table_rows for cell in row.strip("|").split("|")), table_rows
    prose = re.sub(r"```.*?```", "", card, flags=re.S)   # code has its own brackets
    assert not BLANKS.findall(prose), BLANKS.findall(prose)


def test_card_shows_data_training_metrics_and_limits(published):
    card = (published / PATHS.model / CARD_FILE).read_text()
    assert_every_field_filled(card)
    for shown in (
        "d" * 32, "e" * 64, "| images trained on | 48 |", "| files rejected | 3 (too_small: 2, unreadable: 1) |",
        "2 groups, 3 later copies", "CC-BY-4.0 (test photos)", "1.5 kimg",
        "| time in training steps | 8 s over 2 ticks",
        "| precision | bf16 |", "c0de" * 16, "0123456789abcdef",
        "61.234, sampling noise [59.500, 63.250]: 95% band over 200 bootstrap resamples of the 40 generated samples",
        "0.04321 ± 0.00211", "| Inception Score ↑ | not measured |", "| density (~1 is typical) | 0.833 (k = 5) |",
        "| coverage ↑ | 0.547 (k = 5) |", "0.062 (fresh images: ~0.05, copies: 1)",
        "| generated images measured | 40 |",
        "Memorisation: 0.062 of 40 samples", "32 x 32 px images only", "![2 x 2 samples of seed 2024", "(samples.png)",
        "Published to the gallery as release",
    ):
        assert shown in card, shown


def test_card_of_a_bare_generator_says_what_is_missing_and_leaves_nothing_blank(published, tmp_path):
    """No metrics.json, no preprocess or train records: every field still reads as a sentence."""
    params = stage_params(tmp_path)
    path = published / PATHS.train / "generator.pt"
    generator, info = load_generator(path, torch.device("cpu"))
    package = model_package.build_model_package(generator, path.read_bytes(), info, params, tmp_path)
    config = package_config(package, {"status": "skipped", "release": None, "reason": "a test"}, now=_now())
    card = render_model_card(model_card_context(config, package, None, package.files()))
    assert_every_field_filled(card)
    assert "not evaluated: no metrics.json" in card and "| images trained on | not recorded |" in card
    assert "Memorisation was not measured" in card and "nothing is published" in card


def _now():
    from datetime import datetime, timezone

    return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- failures and the gate


def test_missing_generator_is_a_clear_error_and_the_previous_package_stays(published, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(published, root)
    before = package_files(root)
    (root / PATHS.train / "generator.pt").unlink()
    with pytest.raises(UserFacingError, match=r"generator\.pt.*run the train stage"):
        run_publish_stage(stage_params(root), LOG, root)
    assert package_files(root) == before


def test_a_failed_export_publishes_nothing_and_keeps_the_previous_package(published, tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(published, root)
    before, gallery = package_files(root), sorted(p.name for p in (root / "gallery/releases").iterdir())

    def broken_export(*args, **kwargs):
        raise OnnxExportError("simulated export failure")

    monkeypatch.setattr(model_package, "export_checked_onnx", broken_export)
    with pytest.raises(OnnxExportError, match="simulated"):
        run_publish_stage(stage_params(root), LOG, root)
    assert package_files(root) == before
    assert sorted(p.name for p in (root / "gallery/releases").iterdir()) == gallery
    assert not list((root / "results").glob(".model.staging-*"))


def test_a_gate_kept_release_still_gets_the_package_of_this_run(published, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(published, root)
    first = json.loads((root / PATHS.model / CONFIG_FILE).read_text())
    stand_in_run(root, weights_seed=1, metrics={**FULL_METRICS, "fid": 99.0, "fid_noise_low": 97.0,
                                                "fid_noise_high": 101.0})
    report = run_publish_stage(stage_params(root, "publish.gate=better_fid"), LOG, root)
    config = json.loads((root / PATHS.model / CONFIG_FILE).read_text())
    assert report.gallery.status == "skipped" and config["gallery"]["status"] == "skipped"
    assert config["gallery"]["release"] == first["gallery"]["release"]       # the gallery kept the first model
    assert config["files"]["generator.safetensors"] != first["files"]["generator.safetensors"]  # the package did not
    card = (root / PATHS.model / CARD_FILE).read_text()
    assert f"Not published to the gallery, the gallery still shows release {first['gallery']['release']}" in card


# ----------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_file_can_travel_alone(arch):
    """The package ships ganlib/models/<arch>.py as it is: it may import only torch and the standard library."""
    assert model_package.architecture_source(arch, 32)[0] == ARCHITECTURES[arch].generator.__name__


def test_foreign_imports_are_found_wherever_they_are():
    source = b"import math\nimport torch.nn as nn\nfrom . import sibling\ndef f():\n    from ganlib.x import y\n"
    assert foreign_imports(source) == [".", "ganlib.x"]


def test_an_architecture_file_that_imports_scenegan_is_refused(monkeypatch):
    monkeypatch.setattr(model_package, "foreign_imports", lambda source: ["ganlib.errors"])
    with pytest.raises(ModelPackageError, match=r"dcgan\.py: imports ganlib\.errors; .* only torch"):
        model_package.architecture_source("dcgan", 32)


def test_preset_is_named_when_the_run_used_all_its_model_settings():
    params = load_test_params()
    assert matching_preset(params, 64) is None
    quick = [f"{key}={json.dumps(value)}" for key, value in params.presets["quick"].items()]
    assert matching_preset(load_test_params(quick), 64) == "quick"
    r3gan = [f"{key}={json.dumps(value)}" for key, value in params.presets["r3gan-64"].items()]
    assert matching_preset(load_test_params(r3gan), 64) == "r3gan-64"
    assert matching_preset(load_test_params(r3gan), 128) is None


def test_training_time_is_the_sum_of_each_ticks_images_over_its_speed(tmp_path):
    assert step_seconds([{"kimg": 4.0, "img_per_s": 200.0}, {"kimg": 8.0, "img_per_s": 100.0}]) == 20.0 + 40.0
    assert step_seconds([{"kimg": 4.0}]) is None and step_seconds([]) is None
    (tmp_path / "stats.jsonl").write_text("{not json\n")
    with pytest.raises(UserFacingError, match=r"stats\.jsonl.*re-run the train stage"):
        read_training_record(tmp_path)


def test_the_package_is_an_uncached_dvc_output_of_the_publish_stage():
    """Uncached: `dvc exp apply` of a retrain (whose experiment stops before publish) must not try to check it
    out. Persisted: DVC leaves it in place while the stage runs, so a failed run keeps the previous package."""
    outs = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["publish"]["outs"]
    assert {"${base.paths.model}": {"cache": False, "persist": True}} in outs
