"""`scenegan sweep`: parameter sets as DVC experiments under Prefect, ranked by FID.

The slow test runs a real two-run sweep (real `dvc exp run --temp`, a real
Prefect server) on the tiny project. The fast one checks that a bad setting is
refused before anything starts.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run

from flows.cli import main as scenegan


def test_a_bad_grid_key_or_value_is_refused_before_anything_runs(monkeypatch, capsys):
    import types

    def started(**kwargs):
        raise AssertionError("the sweep flow started before its settings were refused")

    # In place of the flow (and without importing Prefect): any call means something started.
    monkeypatch.setitem(sys.modules, "flows.sweep", types.SimpleNamespace(sweep_flow=started))
    params = str(REPO_ROOT / "params.yaml")

    status = scenegan(["sweep", "--params", params, "--json", "--grid", "train.lr_g=1e-4,2e-4",
                       "--grid", "train.lr=1e-4,2e-4"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert status == 2 and "--grid 'train.lr=1e-4,2e-4': unknown key 'train.lr'" in error and "lr_g" in error

    # A bad value in the second run of the grid: named with the run, before the first one runs.
    status = scenegan(["sweep", "--params", params, "--json", "--grid", "train.lr_d=1e-4,-1"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert status == 2 and "sweep run 2 of 2 (train.lr_d=-1)" in error and "greater than 0" in error


def test_runs_rank_by_fid_against_the_best_noise_band_and_failed_runs_come_last():
    from datetime import datetime, timezone

    from ganlib.versions.compare import Comparison, VersionRow
    from ganlib.versions.sweep import failure_reason, plan_sweep, rank_runs

    plan = plan_sweep(REPO_ROOT / "params.yaml", ["train.kimg=2"], ["train.lr_g=1e-4,2e-4,3e-4,4e-4"], [])
    runs = plan.named_runs("0123456789abcdef", datetime(2026, 12, 3, 10, 15, tzinfo=timezone.utc))
    assert [run.name for run in runs][:1] == ["sweep-01234567-20261203T101500Z-1"]
    assert runs[0].set_params == ("train.kimg=2.0", "train.lr_g=0.0001")

    def row(run, fid, low, high):
        # As a stage records it: train.precision resolved on the machine that ran it.
        params = {**run.recorded, "train.precision": "bf16"}
        return VersionRow(run.name, "experiment", "c0ffee", None, None, 48, 32, 2.0, fid, None, None, None, None,
                          32, "x", None, None, (), fid_noise_low=low, fid_noise_high=high, params=params)

    comparison = Comparison((row(runs[0], 20.0, 19.0, 21.0), row(runs[1], 10.5, 9.5, 11.5),
                             row(runs[2], 10.0, 9.0, 11.0)), (), ("fid",))
    message = "`dvc exp run` failed (exit 1); last lines:\nscenegan train: the loss went non-finite. Lower lr.\nERROR: x"
    ranked = rank_runs(comparison, runs, {runs[3].name: failure_reason(message)}, "0123456789abcdef")

    rows = ranked.comparison.rows
    assert [r.label for r in rows] == [runs[2].name, runs[1].name, runs[0].name, runs[3].name]
    assert ranked.best == runs[2].name and ranked.within_noise == (runs[1].name,)
    assert [r.notes[0] for r in rows] == [
        "lr_g=3e-4: best FID", "lr_g=2e-4: within the best's noise band: not told apart from it",
        "lr_g=1e-4: worse than the best beyond the noise band",
        "lr_g=4e-4: failed: scenegan train: the loss went non-finite. Lower lr."]
    # The failed run differs in what it set, not in what the finished ones resolved as they ran.
    assert rows[3].kind == "failed" and ranked.comparison.param_keys == ("train.lr_g",)


@pytest.mark.slow
def test_a_two_run_sweep_is_two_dvc_experiments_ranked_by_fid(tiny_project, subprocess_env, monkeypatch):
    from flows.sweep import sweep_flow

    monkeypatch.setenv("PREFECT_API_URL", subprocess_env["PREFECT_API_URL"])
    monkeypatch.setenv("PATH", subprocess_env["PATH"])
    root, params_file = tiny_project, str(tiny_project / "params.yaml")
    dvc = str(Path(sys.executable).with_name("dvc"))

    # Both at once (jobs=2): two `dvc exp run --temp` in one repository, each waiting for the other's
    # hold on DVC's lock; and no wait for a slot (Prefect's server has a waiting client retry up to 30 s later).
    result = sweep_flow(params_file=params_file, grid=["train.lr_g=1e-4,3e-4"], jobs=2)

    names = [experiment["name"] for experiment in result["experiments"]]
    assert [experiment["status"] for experiment in result["experiments"]] == ["finished", "finished"]
    assert [experiment["label"] for experiment in result["experiments"]] == ["lr_g=1e-4", "lr_g=3e-4"]
    listed = run([dvc, "exp", "list", "--name-only"], root).stdout.split()
    assert set(names) <= set(listed), listed
    # Ranked by FID, best first, with the swept param as a column.
    rows = result["rows"]
    assert sorted(row["label"] for row in rows) == sorted(names)
    assert [row["fid"] for row in rows] == sorted(row["fid"] for row in rows)
    assert sorted(row["train.lr_g"] for row in rows) == [1e-4, 3e-4]
    assert result["best"] == rows[0]["label"]
    with open(result["files"]["csv"], newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [row["label"] for row in written] == [row["label"] for row in rows]
    assert all(float(row["fid"]) > 0 for row in written)
    markdown = Path(result["files"]["markdown"]).read_text()
    assert "ranked by FID" in markdown and "dvc exp apply" in markdown
    assert Path(result["files"]["markdown"]).parent == root / "reports"
