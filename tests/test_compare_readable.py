"""Issue 19 item 4: a compare table a person can read.

    - the params compared are those a run used: presets are never params, a key one side lacks is a
      footnote ("added in this version"), not a difference; a stage's params.json record wins over params.yaml
    - the terminal table fits 120 columns; `--wide` shows every column
    - rows not comparable (kimg, n_samples, extractor, n_reference) are marked, and the plot's line breaks there
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import yaml
from conftest import REPO_ROOT, load_test_params, run

from flows.results import compare_result
from ganlib.config import flatten_dotted
from ganlib.logs import plain_logger
from ganlib.versions.compare import (
    NOT_COMPARABLE_MARK,
    Comparison,
    VersionRow,
    comparable_segments,
    compare_versions,
    differing_param_keys,
    not_comparable_reasons,
    terminal_table,
)

SETTINGS = ["compare.drift=false", "compare.include_history=false"]


def commit(root: Path, tag: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", tag], root)
    run(["git", "tag", tag], root)


def new_repository(root: Path) -> None:
    root.mkdir()
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                 ["git", "config", "user.name", "tests"], [str(Path(sys.executable).with_name("dvc")), "init", "-q"]):
        run(args, root)


# --------------------------------------------------------------------------- params a run used


def test_presets_and_keys_one_side_lacks_are_not_param_differences(tmp_path):
    root = tmp_path / "repo"
    new_repository(root)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    # A commit from before presets.yaml, whose params.yaml still held them: they are not params.
    old = {**params, "presets": yaml.safe_load((REPO_ROOT / "presets.yaml").read_text())}
    assert old["presets"], "the project has presets (what this test is about)"
    old["train"] = {key: value for key, value in old["train"].items() if key != "lr_d"}  # a key added later
    old["train"]["lr_g"] = 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(old))
    commit(root, "old")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    commit(root, "new")

    comparison = compare_versions(root, ["old", "new"], load_test_params(SETTINGS), plain_logger("tests"))

    assert comparison.param_keys == ("train.lr_g",)
    assert comparison.added_param_keys == ("train.lr_d",)
    assert not any(key.startswith("presets") for row in comparison.rows for key in row.params)
    assert "new: added in this version: train.lr_d" in comparison.footnotes()
    markdown = comparison.to_markdown()
    assert markdown.count("added in this version") == 1 and "presets." not in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| ≠ |"))
    assert "train.lr_g" in header and "train.lr_d" not in header and len(header) < 400


def test_a_stage_params_record_is_what_a_run_used(tmp_path):
    root = tmp_path / "repo"
    new_repository(root)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    commit(root, "yaml-only")
    # The evaluate stage ran with n_samples=500 (what its record says), whatever params.yaml says now.
    record = {"evaluate": {"n_samples": 500, "extractor": params["evaluate"]["extractor"]}, "run": {"code": "x"}}
    evaluate_dir = root / params["base"]["paths"]["evaluate"]
    evaluate_dir.mkdir(parents=True)
    (evaluate_dir / "params.json").write_text(json.dumps(record))
    params["retrain"]["cron"] = "0 3 * * *"   # a setting no run records: not a difference
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    commit(root, "recorded")

    comparison = compare_versions(root, ["yaml-only", "recorded"], load_test_params(SETTINGS), plain_logger("tests"))

    yaml_only, recorded = comparison.rows
    assert recorded.params == {"evaluate.n_samples": 500, "evaluate.extractor": params["evaluate"]["extractor"]}
    assert set(yaml_only.params) == set(recorded.params)   # params.yaml keys no stage records are left out
    expected = ("evaluate.n_samples",) if params["evaluate"]["n_samples"] != 500 else ()
    assert comparison.param_keys == expected and comparison.added_param_keys == ()


# --------------------------------------------------------------------------- a table in 120 columns


def row(label: str, fid: float | None = 40.0, kimg: float | None = 48.0, n_samples: int | None = 1000,
        extractor: str | None = "inception", params: dict | None = None, n_reference: int | None = 1000) -> VersionRow:
    return VersionRow(label, "tag", "a" * 40, "2026-12-01T10:00:00Z", "b" * 32, 120, 32, kimg, fid, 0.0123, 0.001,
                      None, None, n_samples, extractor, None, None, (), params=params, n_reference=n_reference)


def many_params_comparison(count: int = 40) -> Comparison:
    rows = [row(f"v{i}", params={f"train.setting_{k:02d}": f"value-{i}-{k}" for k in range(count)}) for i in range(3)]
    return Comparison(tuple(rows), differing_param_keys(rows), ("fid",))


def test_the_terminal_table_fits_120_columns_and_wide_shows_every_param():
    comparison = many_params_comparison()
    assert len(comparison.param_keys) == 40
    result = {"table": comparison.table_rows(), "param_keys": list(comparison.param_keys),
              "footnotes": comparison.footnotes(), "files": {"markdown": "reports/compare.md"}}

    lines = compare_result(result).lines
    assert max(map(len, lines)) <= 120, max(lines, key=len)
    header = lines[0].split()
    assert header[:4] == [NOT_COMPARABLE_MARK, "version", "date", "FID"] and "KID" in header and "images" in header
    shown = [key for key in comparison.param_keys if key in header]
    assert shown, "as many differing params as fit are shown"
    assert f"+{40 - len(shown)} params differ (--wide; all of them in compare.md and compare.csv)" in lines

    wide = compare_result(result, wide=True).lines
    assert all(key in wide[0] for key in comparison.param_keys) and max(map(len, wide)) > 120
    assert not any("params differ" in line for line in wide)
    # compare.md keeps every column.
    assert all(key in comparison.to_markdown() for key in comparison.param_keys)


def test_long_labels_and_footnotes_still_fit():
    rows = [row("x" * 90), row("y" * 90, kimg=16.0, params={f"k{i:03d}": 1 for i in range(60)}), row("z", params={})]
    comparison = Comparison(tuple(rows), (), ("fid",), tuple(f"k{i:03d}" for i in range(60)))
    result = {"table": comparison.table_rows(), "param_keys": [], "footnotes": comparison.footnotes(), "files": {}}
    lines = compare_result(result).lines
    assert max(map(len, lines)) <= 120, max(lines, key=len)
    assert terminal_table([], ()) == []


def test_the_compare_command_takes_wide():
    from flows.cli import build_parser

    assert build_parser().parse_args(["compare", "--wide", "v1"]).wide is True
    assert build_parser().parse_args(["compare"]).wide is False


# --------------------------------------------------------------------------- comparability


def test_kimg_or_sample_count_differences_mark_the_row_and_break_the_line():
    rows = [
        row("a", kimg=48.0),
        row("b", kimg=48.0),
        row("c", kimg=16.0),                 # trained a third as long: unequal runs
        replace(row("unscored", fid=None, kimg=None, n_samples=None), kid_mean=None, kid_std=None),  # skipped
        row("d", kimg=16.0, n_samples=500),  # FID from half the samples: biased upwards, not comparable
        row("e", kimg=16.0, n_samples=500, n_reference=None),   # unknown marks nothing
    ]
    reasons = not_comparable_reasons(rows)
    assert reasons == [(), (), ("kimg 16 vs 48",), (), ("n_samples 500 vs 1000",), ()]
    assert comparable_segments(rows) == [[0, 1], [2, 3], [4, 5]]

    comparison = Comparison(tuple(rows), (), ("fid",))
    marks = [shown[NOT_COMPARABLE_MARK] for shown in comparison.table_rows()]
    assert marks == ["", "", NOT_COMPARABLE_MARK, "", NOT_COMPARABLE_MARK, ""]
    footnotes = comparison.footnotes()
    assert any(note.startswith(f"{NOT_COMPARABLE_MARK} c: ") and "kimg 16 vs 48" in note for note in footnotes)
    assert "n_samples 500 vs 1000" in comparison.to_markdown()
    records = comparison.records()
    assert records[2]["not_comparable_with_previous"] == "kimg 16 vs 48" and records[1]["not_comparable_with_previous"] == ""


def test_extractor_precision_and_reference_size_break_comparability():
    rows = [row("a"), row("b", extractor="inception@tf32"), row("c", extractor="inception@tf32", n_reference=500)]
    assert not_comparable_reasons(rows) == [(), ("extractor inception@tf32 vs inception",), ("n_reference 500 vs 1000",)]
    assert comparable_segments(rows) == [[0], [1], [2]]


def test_the_plot_draws_one_line_per_comparable_segment(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn: list[list[float]] = []
    original = Figure.savefig

    def record_lines(figure, *args, **kwargs):
        # What was drawn, read back from the real figure as it is saved: the FID panel's lines, by x position.
        drawn.extend(list(line.get_xdata()) for line in figure.axes[0].get_lines() if len(line.get_xdata()))
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record_lines)
    rows = [row("a"), row("b"), row("c", kimg=16.0), row("d", kimg=16.0)]
    Comparison(tuple(rows), (), ("fid",)).plot_png(tmp_path / "compare.png")
    assert [list(map(int, x)) for x in drawn] == [[0, 1], [2, 3]]
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- precision/recall/density/coverage


def test_prdc_and_memorisation_are_columns_only_when_some_row_has_them(tmp_path):
    plain = Comparison((row("a"), row("b")), (), ("fid",))
    assert "precision / recall" not in plain.table_rows()[0]

    scored = replace(row("b"), precision=0.6123, recall=0.4, density=0.91, coverage=0.77, memorisation=0.05)
    comparison = Comparison((row("a"), scored), (), ("fid", "precision", "memorisation"))
    older, newer = comparison.table_rows()
    assert (newer["precision / recall"], newer["density / coverage"], newer["memorisation"]) == ("0.612 / 0.4", "0.91 / 0.77", "0.05")
    assert older["precision / recall"] == "" and older["memorisation"] == ""   # evaluated before they existed
    assert comparison.records()[1]["coverage"] == 0.77 and "| 0.612 / 0.4 |" in comparison.to_markdown()
    assert comparison.plot_png(tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_a_history_written_before_the_prdc_columns_takes_new_rows(tmp_path):
    from ganlib.versions.history import append_history_row, read_history

    history = tmp_path / "history.csv"
    history.write_text("date,data_md5,n_images,experiment,commit,checkpoint_kimg,fid,kid_mean,kid_std,is_mean,is_std,"
                       "n_samples,extractor,published,release,flow_run\n"
                       "2026-11-01T00:00:00Z,aaaa,10,old,,48,200.5,0.1,0.01,,,1000,inception,True,R1,\n")
    append_history_row(history, {"date": "2026-12-01T00:00:00Z", "data_md5": "bbbb", "fid": 190.0, "precision": 0.5})
    old, new = read_history(history)
    assert (old["fid"], old["precision"], old["experiment"]) == ("200.5", "", "old")
    assert (new["fid"], new["precision"]) == ("190.0", "0.5")
