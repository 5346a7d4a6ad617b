"""What `scenegan` prints: a few readable lines for people, one complete JSON document with --json.

The commands run as a user runs them (the installed `scenegan` in a child
process) where that is cheap; the stage summaries, whose flows take minutes,
are checked on the values the flows return and the files they write.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run

from flows.cli import main as scenegan_main
from flows.cli import repeat_flags
from flows.output import CommandResult, emit, to_jsonable
from flows.results import pipeline_result, stage_result
from ganlib.config import load_params
from ganlib.progress import Progress

SCENEGAN = str(Path(sys.executable).with_name("scenegan"))
MAX_LINES = 30
DATACLASS_REPR = re.compile(r"\w+\(\w+=")
N_PHOTOS = 200
BAD_FILES = ("notes.txt", "meta.json", "Thumbs.db", "README.md")


def assert_readable(stdout: str) -> None:
    """Short, and no Python reprs: what a person can read at a glance."""
    lines = stdout.splitlines()
    assert 0 < len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{stdout[:3000]}"
    assert max(len(line) for line in lines) < 400, stdout[:3000]
    assert "PosixPath(" not in stdout and not DATACLASS_REPR.search(stdout), stdout[:3000]


def project_params(tmp_path: Path) -> Path:
    """A params.yaml in tmp_path, so that base.paths (data/raw, results/...) resolve inside tmp_path."""
    return Path(shutil.copy2(REPO_ROOT / "params.yaml", tmp_path / "params.yaml"))


def scenegan(tmp_path: Path, *args: str, check: bool = True):
    return run([SCENEGAN, *args], tmp_path, check=check)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """200 small PNGs in nested folders, plus what a real photo folder also holds."""
    from PIL import Image

    src = tmp_path / "photos"
    for i in range(N_PHOTOS):
        folder = src / "trips" / f"{2000 + i % 4}" if i % 2 else src
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (i, 255 - i, 90)).save(folder / f"img-{i:03d}.png")
    for name in BAD_FILES:
        (src / name).write_text("not a photo")
    (src / ".DS_Store").write_bytes(b"\0")
    (src / "__MACOSX").mkdir()
    (src / "__MACOSX" / "._img-000.png").write_bytes(b"\0")
    os.symlink(src / "img-000.png", src / "shortcut.png")
    return src


# --------------------------------------------------------------------------- data import / default


def test_data_import_prints_counts_and_examples_and_json_lists_every_file(tmp_path, photo_folder):
    params = project_params(tmp_path)
    result = scenegan(tmp_path, "data", "import", str(photo_folder), "--params", str(params))
    out = result.stdout
    assert_readable(out)
    assert f"Imported {N_PHOTOS} new image files" in out
    assert "not an image file extension: 4 (README.md, Thumbs.db, meta.json, ...)" in out
    assert "symlink: not followed: 1 (shortcut.png)" in out
    assert "Skipped 2 hidden entries" in out
    assert "Next: `dvc add data/raw`" in out  # into the project's raw folder: record the version
    assert "img-123.png" not in out  # the imported files are counted, not listed

    # Again, for a program (--add: data/raw is no longer empty): every name, nothing new (all already present).
    again = json.loads(scenegan(tmp_path, "data", "import", str(photo_folder), "--add", "--params", str(params),
                                "--json").stdout)
    assert again["ok"] is True and again["imported"] == []
    assert again["existing"] == "add" and again["files_before"] == again["files_after"] == N_PHOTOS
    assert len(again["already_present"]) == N_PHOTOS and "trips/2001/img-001.png" in again["already_present"]
    assert again["dest"] == str(tmp_path / "data" / "raw") and again["hidden_skipped"] == 2
    assert {"name": "shortcut.png", "reason": "symlink: not followed"} in again["skipped"]
    assert again["skipped_by_reason"] == {"not an image file extension": 4, "symlink: not followed": 1}


def test_data_import_json_of_a_fresh_import_names_every_imported_file(tmp_path, photo_folder):
    out_dir = tmp_path / "elsewhere"
    result = scenegan(tmp_path, "data", "import", str(photo_folder), "--out", str(out_dir), "--json",
                      "--params", str(project_params(tmp_path)))
    document = json.loads(result.stdout)
    assert sorted(document["imported"]) == sorted(
        p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("img-*.png") if "__MACOSX" not in p.parts
    )
    assert len(document["imported"]) == N_PHOTOS and document["total_bytes"] > 0
    assert "next" not in document  # not the project's raw folder: no `dvc add` to suggest


def test_a_failed_import_is_one_line_on_stderr_and_a_json_error_on_stdout(tmp_path):
    missing, params = tmp_path / "no-such-folder", str(project_params(tmp_path))
    human = scenegan(tmp_path, "data", "import", str(missing), "--params", params, check=False)
    assert human.returncode == 2 and human.stdout == ""
    assert human.stderr.startswith("scenegan: ") and str(missing) in human.stderr and "Traceback" not in human.stderr

    machine = scenegan(tmp_path, "data", "import", str(missing), "--params", params, "--json", check=False)
    assert machine.returncode == 2
    document = json.loads(machine.stdout)
    assert document["ok"] is False and str(missing) in document["error"]
    assert "scenegan: " in machine.stderr


def test_data_default_says_what_it_wrote_and_how_to_use_it(tmp_path):
    out = tmp_path / "x"
    result = scenegan(tmp_path, "data", "default", "--n", "20", "--size", "32", "--out", str(out),
                      "--params", str(project_params(tmp_path)))
    assert_readable(result.stdout)
    assert "Wrote 20 scenes of 32x32 px (seed 0) to x" in result.stdout
    assert "Next: `scenegan data import x`" in result.stdout

    document = json.loads(scenegan(tmp_path, "data", "default", "--n", "20", "--size", "32", "--out", str(out),
                                   "--params", str(project_params(tmp_path)), "--json").stdout)
    assert document["ok"] and document["n_images"] == 20 and document["size"] == 32
    assert document["out_dir"] == str(out) and document["images_per_second"] > 0


def test_bad_arguments_with_json_still_give_a_json_document(tmp_path):
    result = scenegan(tmp_path, "data", "default", "--size", "8", "--json", check=False)
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"ok": False, "error": "data default: argument --size: must be >= 16, got 8"}


# --------------------------------------------------------------------------- preset, summary, fid-real


def test_preset_list_is_readable_and_json_holds_every_preset(tmp_path):
    listing = scenegan(tmp_path, "preset", "--params", str(REPO_ROOT / "params.yaml"))
    assert_readable(listing.stdout)
    presets = load_params(REPO_ROOT / "params.yaml").presets
    assert all(f"{name}: " in listing.stdout for name in presets)
    # What differs between presets first; what they share is counted.
    assert "r3gan-64: preprocess.resolution=64, preprocess.min_side=64, train.g_width=48" in listing.stdout
    assert "train.arch=r3gan" not in listing.stdout and " more" in listing.stdout

    document = json.loads(scenegan(tmp_path, "preset", "--params", str(REPO_ROOT / "params.yaml"), "--json").stdout)
    assert document["presets"] == json.loads(json.dumps(presets))
    assert document["overrides"]["r3gan-64"][0] == "preprocess.resolution=64"


def test_summary_of_a_project_with_nothing_run_says_what_to_run(tmp_path):
    params = project_params(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    human = run([SCENEGAN, "summary", "--params", str(params)], tmp_path, env)
    assert_readable(human.stdout)
    assert "not published yet" in human.stdout and "dvc repro evaluate" in human.stdout

    document = json.loads(run([SCENEGAN, "summary", "--params", str(params), "--json"], tmp_path, env).stdout)
    assert document["ok"] and document["gallery"] is None and document["metrics"] is None
    assert document["metrics_file"] == str(tmp_path / "results" / "evaluate" / "metrics.json")


def test_fid_real_prints_the_table_and_json_the_comparison(tmp_path, capsys):
    from test_metrics_support import smooth_images, write_prepared_dataset

    a = write_prepared_dataset(tmp_path / "a", smooth_images(40, seed=3))
    b = write_prepared_dataset(tmp_path / "b", smooth_images(40, seed=4))
    tiny = ["--set", "evaluate.extractor=tiny-random-conv", "--set", "evaluate.device=cpu",
            "--set", "evaluate.batch_size=16", "--set", "evaluate.kid_subset_size=16", "--set", "evaluate.metrics=[fid,kid]"]
    args = ["fid-real", str(a), str(b), "--params", str(project_params(tmp_path)), *tiny]

    assert scenegan_main(args) == 0
    out = capsys.readouterr().out
    assert_readable(out)
    assert "FID" in out and "KID" in out

    assert scenegan_main([*args, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] and document["fid"] > 0 and document["n_a"] == document["n_b"] == 40
    assert document["dataset_a"] == str(a)


# --------------------------------------------------------------------------- stages (from what the flows return)


def stage_outcomes(tmp_path: Path) -> dict[str, dict]:
    """What each stage's flow returns, as the tasks in tasks/ build it, with the files the stages write."""
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    rejects = [{"path": f"bad-{i}.jpg", "reason": "truncated or corrupt image", "detail": "cannot identify"}
               for i in range(5)] + [{"path": "tiny.png", "reason": "too small", "detail": "8x8 < 64"}]
    (prepared / "qa_report.json").write_text(json.dumps({"rejects": rejects}))
    # metrics.json as evaluate writes it (a dict literal: EvaluationReport gains fields over time).
    metrics = {
        "fid": 41.2345678, "kid_mean": 0.0123456, "kid_std": 0.00123, "kid_subset_size": 100, "is_mean": None,
        "is_std": None, "is_unavailable_reason": "no weights", "precision": None, "recall": None, "n_samples": 5000,
        "n_reference": 2000, "batch_size": 64, "seed": 0, "extractor": "inception-v3-compat",
        "extractor_description": "FID Inception", "data_md5": "0123456789abcdef", "dataset_sha256": "ab" * 32,
        "checkpoint_kimg": 48.0, "resolution": 64, "device": "cpu", "notes": [],
    }
    return {
        "preprocess": {"out_dir": str(prepared), "count": 1994, "resolution": 64, "scanned": 2000, "rejected": 6,
                       "rejects_by_reason": {"truncated or corrupt image": 5, "too small": 1}, "hidden_skipped": 0,
                       "images_sha256": "cd" * 32, "data_md5": "0123456789abcdef", "seconds": 12.5},
        "train": {"kimg": 48.0, "steps": 1500, "generator": str(tmp_path / "runs" / "train" / "generator.pt"),
                  "resumed_from": None},
        "evaluate": metrics,
        "publish": {"status": "published", "reason": "gate always", "target": "results/gallery",
                    "index": str(tmp_path / "results" / "gallery" / "index.html"), "release": "20261201T031500Z",
                    "fid": 41.2345678, "previous_release": None, "previous_fid": None, "manifest_sha256": "ef" * 32,
                    "checkpoint_kimg": 48.0, "files": 42, "date": "2026-12-01T03:15:00+00:00"},
    }


def test_each_stage_summary_says_what_it_produced_and_what_to_run_next(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    outcomes = stage_outcomes(tmp_path)
    expected = {
        "preprocess": ["1994 images at 64 px in data/prepared", "rejected as truncated or corrupt image: 5 (bad-0.jpg",
                       "data/prepared/qa_report.json", "Next: `scenegan run train --preset r3gan-64`"],
        "train": ["48 kimg (1500 steps)", "runs/train/generator.pt", "Next: `scenegan run evaluate --preset r3gan-64`"],
        "evaluate": ["FID 41.23", "KID 0.01235 ± 0.00123", "48 kimg", "results/evaluate/metrics.json",
                     "Next: `scenegan run publish --preset r3gan-64`"],
        "publish": ["release 20261201T031500Z (42 files, FID 41.23)", "results/gallery/index.html",
                    "Next: `scenegan summary`"],
    }
    for stage, outcome in outcomes.items():
        result = stage_result(stage, outcome, params, tmp_path, " --preset r3gan-64")
        buffer = io.StringIO()
        emit(result, as_json=False, stream=buffer)
        assert_readable(buffer.getvalue())
        for text in expected[stage]:
            assert text in buffer.getvalue(), (stage, text, buffer.getvalue())

        buffer = io.StringIO()
        emit(result, as_json=True, stream=buffer)
        document = json.loads(buffer.getvalue())
        assert document["stage"] == stage and document["result"] == json.loads(json.dumps(outcome))

    pipeline = io.StringIO()
    emit(pipeline_result(outcomes, params, tmp_path, recorded_in_dvc=True), as_json=False, stream=pipeline)
    assert_readable(pipeline.getvalue())
    assert "dvc.lock" in pipeline.getvalue() and "Next: `scenegan summary`" in pipeline.getvalue()


def test_evaluate_summary_labels_the_fid_band_as_sampling_noise_and_says_why_fid_infinity_is_missing(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    outcome = {**stage_outcomes(tmp_path)["evaluate"], "fid_noise_low": 40.1, "fid_noise_high": 42.37,
               "fid_noise_bias": 0.9, "fid_noise_resamples": 200, "fid_noise_n": 5000, "fid_infinity": None,
               "fid_infinity_unavailable_reason": "FID-infinity not reported: 100 generated samples of 2048-dimensional "
                                                  "features; ... needs at least 4096"}
    buffer = io.StringIO()
    emit(stage_result("evaluate", outcome, params, tmp_path, ""), as_json=False, stream=buffer)
    shown = buffer.getvalue()
    assert_readable(shown)
    assert ("FID 41.23, sampling noise [40.1, 42.37] (95% band over 200 bootstrap resamples of the 5000 "
            "generated samples; reference fixed)") in shown
    assert "FID-infinity not reported: 100 generated samples of 2048-dimensional features" in shown

    reported = {**outcome, "fid_infinity": 39.87654, "fid_infinity_unavailable_reason": None}
    buffer = io.StringIO()
    emit(stage_result("evaluate", reported, params, tmp_path, ""), as_json=False, stream=buffer)
    assert "FID-infinity 39.88" in buffer.getvalue() and "not reported" not in buffer.getvalue()


def test_ensure_retrain_and_compare_summaries_are_short(tmp_path, monkeypatch):
    from flows.results import compare_result, data_ensure_result, retrain_result
    from ganlib.data.raw_data import RawDataStatus

    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(7):
        (raw / f"scene-{i:06d}.png").write_bytes(b"png")
    texts = []
    for result in (
        data_ensure_result(RawDataStatus(raw, "generated", "aaaaaaaa11", "bbbbbbbb22")),
        retrain_result({"status": "nothing to do", "data_md5": "bbbbbbbb22", "previous_md5": "bbbbbbbb22",
                        "experiment": None, "fid": None, "published": None}),
        retrain_result({"status": "retrained", "data_md5": "bbbbbbbb22", "previous_md5": "aaaaaaaa11",
                        "experiment": "retrain-bbbbbbbb", "fid": 38.5, "published": "published"}),
        compare_result({"files": {"csv": str(tmp_path / "reports" / "compare.csv")},
                        "rows": [{"version": f"v{i}", "fid": 40.0 - i} for i in range(25)],
                        "table": [{"version": f"v{i}", "fid": f"{40.0 - i:.2f}"} for i in range(25)]}),
    ):
        buffer = io.StringIO()
        emit(result, as_json=False, stream=buffer)
        assert_readable(buffer.getvalue())
        texts.append(buffer.getvalue())
    assert "data/raw: generated the embedded default dataset (7 files); dataset version bbbbbbbb" in texts[0]
    assert "data.dvc changed from aaaaaaaa" in texts[0]
    assert "--force" in texts[1] and "FID 38.5" in texts[2] and "retrain-bbbbbbbb" in texts[2]
    assert "and 5 more versions" in texts[3] and "csv: reports/compare.csv" in texts[3]


def test_the_suggested_next_command_repeats_the_options_as_typed():
    from flows.cli import build_parser

    args = build_parser().parse_args(["run", "train", "--preset", "r3gan-64", "--set", "train.kimg=2",
                                      "--params", "my params.yaml"])
    assert repeat_flags(args) == " --params 'my params.yaml' --preset r3gan-64 --set train.kimg=2"
    assert repeat_flags(build_parser().parse_args(["run", "train"])) == ""


# --------------------------------------------------------------------------- the JSON converter


def test_to_jsonable_converts_explicitly_and_refuses_unknown_types():
    from ganlib.data.importer import ImportSummary, Skipped

    summary = ImportSummary(source=Path("/src"), dest=Path("/dest"), imported=("a.png",), already_present=(),
                            skipped=(Skipped("x.txt", "not an image"),), hidden_skipped=1, total_bytes=3)
    assert to_jsonable(summary) == {"source": "/src", "dest": "/dest", "imported": ["a.png"], "already_present": [],
                                    "skipped": [{"name": "x.txt", "reason": "not an image"}], "hidden_skipped": 1,
                                    "total_bytes": 3, "existing": "new", "files_before": 0, "files_after": 0}
    assert to_jsonable({"fid": float("nan"), 1: {2, 1}}) == {"fid": None, "1": [1, 2]}
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())


def test_emit_prints_lines_then_next_steps_or_one_document():
    result = CommandResult(["Did it."], {"count": 2, "where": Path("/out")}, ["`scenegan summary`"])
    human, machine = io.StringIO(), io.StringIO()
    emit(result, as_json=False, stream=human)
    emit(result, as_json=True, stream=machine)
    assert human.getvalue() == "Did it.\nNext: `scenegan summary`\n"
    assert json.loads(machine.getvalue()) == {"ok": True, "count": 2, "where": "/out", "next": ["`scenegan summary`"]}


# --------------------------------------------------------------------------- progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured_log():
    """A logger whose records are kept in a list (no propagation: other handlers see nothing)."""
    logger = logging.getLogger("test_cli_output.progress")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, records
    logger.removeHandler(handler)


def test_progress_logs_rate_lines_at_most_every_interval_when_not_on_a_terminal(captured_log):
    log, records = captured_log
    clock = FakeClock()
    with Progress(log, 100, "import", "files", interval_s=10, stream=io.StringIO(), clock=clock) as progress:
        for _ in range(100):
            clock.now += 0.5  # 2 files/s: a line every 20 files
            progress.advance()
    lines = [record.getMessage() for record in records]
    assert lines[0] == "import: 20/100 files, 2.0 files/s, ETA 40 s"
    assert lines[1] == "import: 40/100 files, 2.0 files/s, ETA 30 s"
    assert len(lines) == 5 + 1  # at 20, 40, 60, 80, 100, then the closing line
    assert lines[-1] == "import: 100/100 files in 50 s (2.0 files/s)"


def test_progress_without_a_total_gives_count_and_rate_and_a_short_job_logs_nothing(captured_log):
    log, records = captured_log
    clock = FakeClock()
    progress = Progress(log, None, "import", "files", interval_s=10, stream=io.StringIO(), clock=clock)
    clock.now += 12
    progress.advance(600)
    assert records[-1].getMessage() == "import: 600 files, 50 files/s"

    records.clear()
    with Progress(log, 10, "default dataset", "scenes", interval_s=10, stream=io.StringIO(), clock=clock) as quick:
        quick.advance(10)
    assert records == []


def test_progress_draws_a_bar_instead_of_log_lines_on_a_terminal(captured_log):
    log, records = captured_log

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, clock = Terminal(), FakeClock()
    with Progress(log, 50, "import", "files", interval_s=0, stream=terminal, clock=clock) as progress:
        for _ in range(50):
            clock.now += 1
            progress.advance()
    assert records == [] and "import" in terminal.getvalue()


def test_import_reports_its_progress_through_the_logger(tmp_path, photo_folder, captured_log, monkeypatch):
    from functools import partial

    from ganlib.data import importer

    log, records = captured_log
    monkeypatch.setattr(importer, "Progress", partial(Progress, interval_s=0, bar=False))
    importer.import_dataset(photo_folder, tmp_path / "raw", log)
    rate_line = re.compile(r"import: \d+/200 files, [\d.]+ files/s(, ETA .+)?")
    rate_lines = [record.getMessage() for record in records if rate_line.fullmatch(record.getMessage())]
    assert len(rate_lines) == N_PHOTOS and rate_lines[-1].startswith("import: 200/200 files")
