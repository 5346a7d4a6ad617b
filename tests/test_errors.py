"""Every error at an entry point: one line (or one JSON document) and the right exit status, never a bare traceback.

User errors (bad params, a device this machine lacks, a bad --out) exit 2 with
`{"ok": false, "error"}` under --json; a bug exits 1 with kind "internal"
and its traceback in the log (stderr), not on stdout. Issue 18, item 5.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run, set_params

from flows.cli import main as scenegan_main
from flows.boundary import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, EXIT_USER_ERROR

SCENEGAN = str(Path(sys.executable).with_name("scenegan"))
DVC = str(Path(sys.executable).with_name("dvc"))


def without_gpu(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a machine without a GPU, even on one that has it (CUDA sees no device)."""
    import os

    return {**(os.environ if env is None else env), "CUDA_VISIBLE_DEVICES": ""}


def project(tmp_path: Path) -> Path:
    """A params.yaml alone in tmp_path: base.paths resolve inside it, so anything a command writes shows."""
    return Path(shutil.copy2(REPO_ROOT / "params.yaml", tmp_path / "params.yaml"))


def scenegan_json(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """Run `scenegan ARGS --json`: (exit status, the one JSON document on stdout, stderr)."""
    result = subprocess.run([SCENEGAN, *args, "--json"], cwd=tmp_path, env=env, text=True, capture_output=True)
    return result.returncode, json.loads(result.stdout), result.stderr  # json.loads: exactly one document


def assert_user_error(status: int, document: dict, stderr: str, *named: str) -> None:
    assert status == EXIT_USER_ERROR, stderr
    assert document["ok"] is False and set(document) == {"ok", "error"}, document
    assert all(text in document["error"] for text in named), document["error"]
    assert "Traceback" not in stderr, stderr


# --------------------------------------------------------------------------- the three cases of the issue


@pytest.mark.parametrize("command", [["run", "train"], ["pipeline"], ["run", "evaluate"]])
def test_a_device_the_machine_lacks_is_a_user_error_before_anything_runs(tmp_path, command):
    """Checked before the first stage: the pipeline refuses before preprocessing (whose missing data would
    otherwise be the first error), and nothing is written."""
    params = project(tmp_path)
    key = "evaluate.device" if command == ["run", "evaluate"] else "base.device"
    status, document, stderr = scenegan_json(
        tmp_path, *command, "--params", str(params), "--set", f"{key}=cuda", env=without_gpu())
    assert_user_error(status, document, stderr, f"{key} is 'cuda' but no CUDA device is visible", f"set {key}: auto")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


def test_an_infinite_kimg_is_refused_when_the_params_load(tmp_path):
    params = project(tmp_path)
    status, document, stderr = scenegan_json(tmp_path, "run", "train", "--params", str(params), "--set", "train.kimg=.inf")
    assert_user_error(status, document, stderr, "train.kimg: Input should be a finite number")

    params.write_text(params.read_text().replace("\n  kimg: 48", "\n  kimg: .inf", 1))
    status, document, stderr = scenegan_json(tmp_path, "pipeline", "--params", str(params))
    assert_user_error(status, document, stderr, "train.kimg", "finite number", str(params))
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


@pytest.mark.parametrize("command", [["data", "default", "--n", "2", "--size", "32"], ["data", "import", "photos"]])
@pytest.mark.parametrize("out", ["a-file", "a-file/inside"])
def test_an_out_that_is_an_existing_file_is_a_user_error(tmp_path, command, out):
    params = project(tmp_path)
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "photos").mkdir()
    status, document, stderr = scenegan_json(tmp_path, *command, "--out", out, "--params", str(params))
    assert_user_error(status, document, stderr, "--out", "a-file exists and is not a directory")
    assert (tmp_path / "a-file").read_text() == "not a directory\n"


# --------------------------------------------------------------------------- a bug


# A forced bug: the summary's result builder raises, as a bug in any handler would.
BROKEN_SUMMARY = """
import sys
import flows.results

def broken(*args, **kwargs):
    raise ZeroDivisionError("forced by the test")

flows.results.summary_result = broken
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("as_json", [True, False])
def test_a_bug_is_an_internal_error_with_its_traceback_in_the_log_not_on_stdout(tmp_path, as_json):
    # A file made unreadable would be the natural way in, but these tests may run as root (which reads
    # anything), and an unreadable params.yaml is rightly a user error (ParamsError): so a forced bug.
    args = ["summary", "--params", str(project(tmp_path))] + (["--json"] if as_json else [])
    result = subprocess.run([sys.executable, "-c", BROKEN_SUMMARY, *args], cwd=tmp_path, text=True,
                            capture_output=True)
    assert result.returncode == EXIT_INTERNAL_ERROR, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "forced by the test" in result.stderr
    assert "scenegan: internal error (a bug: its traceback is in the log, on stderr): ZeroDivisionError" in result.stderr
    if as_json:
        document = json.loads(result.stdout)
        assert document == {"ok": False, "kind": "internal", "error": (
            "internal error (a bug: its traceback is in the log, on stderr): ZeroDivisionError: forced by the test")}
    else:
        assert result.stdout == ""


def test_an_interrupt_under_json_still_gives_a_document(tmp_path, monkeypatch, capsys):
    import flows.results

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flows.results, "summary_result", interrupted)
    status = scenegan_main(["summary", "--params", str(project(tmp_path)), "--json"])
    assert status == EXIT_INTERRUPTED
    assert json.loads(capsys.readouterr().out) == {"ok": False, "error": "interrupted", "kind": "interrupted"}


def test_a_missing_command_is_a_usage_error(tmp_path):
    result = run([SCENEGAN, "data"], tmp_path, check=False)
    assert result.returncode == EXIT_USER_ERROR and result.stdout == ""
    assert "usage:" in result.stderr and "scenegan: a command is required" in result.stderr


# --------------------------------------------------------------------------- python -m flows.stage under dvc repro


@pytest.mark.slow  # a refused dvc repro of the tiny project as `dvc repro` left it (conftest)
def test_dvc_repro_of_a_stage_refused_for_its_device_writes_nothing_and_dvc_checkout_restores_the_outputs(
    reproduced_project, subprocess_env
):
    """What DVC does (3.67, checked here so that a change shows): it deletes a stage's outputs before running
    its command and does not restore them when the command fails. The stage refuses before writing anything
    (the checkpoints, which are not a DVC output, stay), says so, and `dvc checkout train` brings the
    previous outputs back from the cache."""
    root = reproduced_project
    generator = root / "runs" / "train" / "generator.pt"
    trained = generator.read_bytes()
    checkpoints = sorted(p.relative_to(root) for p in (root / "runs" / "checkpoints").rglob("*"))
    assert checkpoints

    set_params(root / "params.yaml", ["base.device=cuda"])
    refused = run([DVC, "repro", "train"], root, without_gpu(subprocess_env), check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "scenegan train: base.device is 'cuda' but no CUDA device is visible" in output
    assert "`dvc checkout train` restores them" in output and "Traceback" not in output
    assert not generator.parent.exists()  # DVC removed the output before the stage ran, and left it removed
    assert sorted(p.relative_to(root) for p in (root / "runs" / "checkpoints").rglob("*")) == checkpoints

    run([DVC, "checkout", "train"], root, subprocess_env)
    assert generator.read_bytes() == trained


def test_the_stage_refuses_before_writing_when_run_without_dvc(tmp_path):
    params = project(tmp_path)
    result = subprocess.run([sys.executable, "-m", "flows.stage", "train", "--params", str(params),
                             "--set", "base.device=cuda"], cwd=REPO_ROOT, env=without_gpu(),
                            text=True, capture_output=True)
    assert result.returncode == EXIT_USER_ERROR and result.stdout == ""
    assert result.stderr.startswith("scenegan train: base.device is 'cuda'") and "dvc checkout" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


# --------------------------------------------------------------------------- the device check itself


def test_require_device_refuses_an_absent_accelerator_and_needs_no_torch_for_auto_or_cpu(monkeypatch):
    import torch

    from ganlib.errors import UserFacingError
    from ganlib.hardware.device import DeviceError, require_device, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"evaluate\.device is 'cuda'.*set evaluate\.device: auto or cpu") as err:
        require_device("cuda", "evaluate.device")
    assert isinstance(err.value, UserFacingError) and isinstance(err.value, RuntimeError)
    with pytest.raises(DeviceError, match=r"base\.device is 'cuda'"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")

    check = ("import sys; from ganlib.hardware.device import require_device; require_device('auto'); "
             "require_device('cpu'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True)


def test_the_stages_that_need_a_device_are_checked_and_the_others_are_not():
    from flows.stage import stage_device_settings
    from ganlib.config import load_params

    params = load_params(REPO_ROOT / "params.yaml", ["base.device=cuda", "evaluate.device=cuda"])
    assert stage_device_settings(params, "preprocess") == []
    assert stage_device_settings(params, "train") == [("base.device", "cuda")]
    assert stage_device_settings(params, "evaluate") == [("evaluate.device", "cuda")]
    assert stage_device_settings(params, "publish") == []  # gate: always generates on the CPU, never re-scores
    better = load_params(REPO_ROOT / "params.yaml", ["evaluate.device=cuda", "publish.gate=better_fid"])
    assert stage_device_settings(better, "publish") == [("evaluate.device", "cuda")]


# --------------------------------------------------------------------------- scenegan check: before dvc repro


def test_scenegan_check_validates_params_and_devices_and_runs_nothing(tmp_path):
    params = project(tmp_path)
    ok = run([SCENEGAN, "check", "--params", str(params)], tmp_path)
    assert ok.stdout.startswith(f"{params}: valid for preprocess, train, evaluate, publish; devices present")
    status, document, stderr = scenegan_json(tmp_path, "check", "--params", str(params), "--stages", "train",
                                             "--set", "base.device=cuda", env=without_gpu())
    assert_user_error(status, document, stderr, "base.device is 'cuda' but no CUDA device is visible")
    status, document, _ = scenegan_json(tmp_path, "check", "--params", str(params), "--stages", "preprocess",
                                        "--set", "base.device=cuda", env=without_gpu())
    assert status == 0 and document["devices"] == {} and document["stages"] == ["preprocess"]
    status, document, stderr = scenegan_json(tmp_path, "check", "--params", str(params), "--set", "train.lr_g='1e-3'")
    assert_user_error(status, document, stderr, "train.lr_g", "quoted text")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
