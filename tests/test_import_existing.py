"""`scenegan data import` into a destination that already holds files: refuse, --add or --replace.

Real files in tmp folders; the version naming runs against a real git + DVC repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run

from ganlib.data import importer
from ganlib.data.importer import ADD, REPLACE, DestinationNotEmptyError, import_dataset
from ganlib.logs import plain_logger

LOG = plain_logger("tests")
SCENEGAN = str(Path(sys.executable).with_name("scenegan"))
DVC = str(Path(sys.executable).with_name("dvc"))


def png_bytes(rgb: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def write_photos(folder: Path, names: list[str], shade: int = 0) -> Path:
    for index, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes((index, shade, 9)))
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def project_params(tmp_path: Path) -> Path:
    """A params.yaml in tmp_path, so that base.paths.raw is tmp_path/data/raw."""
    params = tmp_path / "params.yaml"
    params.write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    return params


def scenegan(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run([SCENEGAN, *args], cwd, check=False)


@pytest.fixture
def old_and_new(tmp_path: Path) -> tuple[Path, Path]:
    """A destination with two old photos, and a source folder with three new ones."""
    dest = write_photos(tmp_path / "data" / "raw", ["old-a.png", "old/b.png"], shade=100)
    src = write_photos(tmp_path / "photos", ["new-1.png", "new-2.png", "trip/new-3.png"])
    return dest, src


# --------------------------------------------------------------------------- library


def test_a_non_empty_destination_is_refused_without_add_or_replace(old_and_new) -> None:
    dest, src = old_and_new
    before = tree(dest)
    with pytest.raises(DestinationNotEmptyError) as error:
        import_dataset(src, dest, LOG)
    message = str(error.value)
    assert "already holds 2 file(s)" in message and "--add merges" in message and "--replace puts" in message
    assert tree(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw"]  # no staging folder left behind


@pytest.mark.parametrize("make_dest", [False, True])
def test_an_empty_or_missing_destination_needs_no_flag(tmp_path: Path, make_dest: bool) -> None:
    src, dest = write_photos(tmp_path / "photos", ["a.png"]), tmp_path / "raw"
    if make_dest:
        dest.mkdir()
    summary = import_dataset(src, dest, LOG)
    assert summary.imported == ("a.png",) and summary.files_before == 0 and summary.files_after == 1


def test_add_merges_and_counts_what_was_there_and_what_came(old_and_new) -> None:
    dest, src = old_and_new
    summary = import_dataset(src, dest, LOG, existing=ADD)
    assert (summary.files_before, len(summary.imported), summary.files_after) == (2, 3, 5)
    assert sorted(tree(dest)) == ["new-1.png", "new-2.png", "old-a.png", "old/b.png", "trip/new-3.png"]


def test_replace_puts_the_import_in_place_of_the_old_files(old_and_new) -> None:
    dest, src = old_and_new
    summary = import_dataset(src, dest, LOG, existing=REPLACE)
    assert tree(dest) == tree(src)
    assert (summary.files_before, len(summary.imported), summary.files_after) == (2, 3, 3)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw"]  # the old folder is gone, no staging left


def test_replace_keeps_the_old_files_when_the_swap_itself_fails(old_and_new, monkeypatch) -> None:
    """The second rename (staging -> dest) fails: the first is undone, the old files are where they were."""
    dest, src = old_and_new
    before, real_replace = tree(dest), os.replace

    def failing_replace(a, b) -> None:
        if Path(a).name.startswith(".raw.import-"):
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(importer.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        import_dataset(src, dest, LOG, existing=REPLACE)
    assert tree(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw"]


# --------------------------------------------------------------------------- command line


def test_the_command_refuses_a_non_empty_raw_folder_and_says_both_options(tmp_path: Path, old_and_new) -> None:
    dest, src = old_and_new
    params = str(project_params(tmp_path))
    before = tree(dest)
    human = scenegan(tmp_path, "data", "import", str(src), "--params", params)
    assert human.returncode == 2 and human.stdout == ""
    assert "--add" in human.stderr and "--replace" in human.stderr and "Traceback" not in human.stderr
    machine = scenegan(tmp_path, "data", "import", str(src), "--params", params, "--json")
    document = json.loads(machine.stdout)
    assert machine.returncode == 2 and document["ok"] is False and "--add merges" in document["error"]
    assert tree(dest) == before

    both = scenegan(tmp_path, "data", "import", str(src), "--add", "--replace", "--params", params, "--json")
    assert both.returncode == 2 and "not allowed with argument" in json.loads(both.stdout)["error"]
    assert tree(dest) == before


def test_add_summary_and_json_carry_the_counts(tmp_path: Path, old_and_new) -> None:
    dest, src = old_and_new
    params = project_params(tmp_path)
    human = scenegan(tmp_path, "data", "import", str(src), "--add", "--params", str(params))
    assert human.returncode == 0, human.stderr
    assert "Added to what was there: 2 before + 3 new = 5 files in data/raw now." in human.stdout
    assert "Next: `dvc add data/raw`" in human.stdout
    again = json.loads(scenegan(tmp_path, "data", "import", str(src), "--add", "--params", str(params), "--json").stdout)
    assert (again["files_before"], len(again["imported"]), again["files_after"]) == (5, 0, 5)
    assert again["existing"] == "add" and again["replaced_version"] is None


def test_replace_of_an_untracked_folder_warns_that_it_cannot_come_back(tmp_path: Path, old_and_new) -> None:
    dest, src = old_and_new
    params = project_params(tmp_path)
    result = scenegan(tmp_path, "data", "import", str(src), "--replace", "--params", str(params))
    assert result.returncode == 0, result.stderr
    assert "Replaced the 2 files in data/raw with 3 image files" in result.stdout
    assert "not tracked by DVC" in result.stdout and "cannot be recovered" in result.stdout
    assert tree(dest) == tree(src)


def test_replace_names_the_dvc_version_and_its_restore_command_brings_it_back(project_copy: Path, tmp_path: Path) -> None:
    root = project_copy
    old = write_photos(root / "data" / "raw", ["old-a.png", "old/b.png"], shade=100)
    old_tree = tree(old)
    run([DVC, "add", "-q", "data/raw"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "dataset v1"], root)
    md5 = yaml_md5(root / "data" / "raw.dvc")
    commit = run(["git", "rev-parse", "--short", "HEAD"], root).stdout.strip()
    src = write_photos(tmp_path / "photos", ["new-1.png", "new-2.png", "trip/new-3.png"])

    result = scenegan(root, "data", "import", str(src), "--replace", "--params", str(root / "params.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    replaced = document["replaced_version"]
    assert replaced["md5"] == md5 and replaced["in_cache"] is True and replaced["commit"] == commit
    assert replaced["restore"] == f"git checkout {commit} -- data/raw.dvc && dvc checkout data/raw"
    assert (document["files_before"], len(document["imported"]), document["files_after"]) == (2, 3, 3)
    assert tree(old) == tree(src)

    # The new version is recorded and committed; then the old one is brought back with the command given.
    run([DVC, "add", "-q", "data/raw"], root)
    run(["git", "commit", "-qam", "dataset v2"], root)
    run(["bash", "-c", replaced["restore"].replace("dvc checkout", f"{DVC} checkout")], root)
    assert tree(root / "data" / "raw") == old_tree


def test_replace_summary_names_the_version_in_words(project_copy: Path, tmp_path: Path) -> None:
    """data/raw.dvc recorded but not committed: the current .dvc file is the way back (forced)."""
    root = project_copy
    old_tree = tree(write_photos(root / "data" / "raw", ["old-a.png"], shade=100))
    run([DVC, "add", "-q", "data/raw"], root)  # recorded, not committed
    md5 = yaml_md5(root / "data" / "raw.dvc")
    src = write_photos(tmp_path / "photos", ["new-1.png"])
    result = scenegan(root, "data", "import", str(src), "--replace", "--params", str(root / "params.yaml"))
    assert result.returncode == 0, result.stderr
    assert f"Replaced dataset version {md5[:8]} (md5 {md5}, data/raw.dvc)." in result.stdout
    assert "To get it back: `dvc checkout --force data/raw` (discards the imported files;" in result.stdout
    assert "Next: `dvc add data/raw`" in result.stdout
    command = re.search(r"To get it back: `([^`]+)`", result.stdout).group(1)
    run(["bash", "-c", command.replace("dvc checkout", f"{DVC} checkout")], root)   # this venv's dvc
    assert tree(root / "data" / "raw") == old_tree


def yaml_md5(dvc_file: Path) -> str:
    import yaml

    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"].removesuffix(".dir")
