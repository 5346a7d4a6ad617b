"""The scenegan command line: defaults from params.yaml, user errors as one clear message."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import REPO_ROOT, run

SCENEGAN = str(Path(sys.executable).with_name("scenegan"))


def test_data_default_writes_scenes_from_the_command_line(tmp_path):
    out = tmp_path / "raw"
    result = run([SCENEGAN, "data", "default", "--n", "6", "--size", "32", "--out", str(out),
                  "--params", str(REPO_ROOT / "params.yaml")], tmp_path)
    assert sorted(p.name for p in out.rglob("*.png")) == [f"scene-{i:06d}.png" for i in range(6)]  # in class folders
    # Not the project's raw folder: the next step copies them there.
    assert "scenegan data import raw" in result.stdout  # shown relative to the working directory


def test_data_default_refuses_a_folder_of_someone_elses_photos(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    result = run([SCENEGAN, "data", "default", "--n", "2", "--out", str(out),
                  "--params", str(REPO_ROOT / "params.yaml")], tmp_path, check=False)
    assert result.returncode == 2
    assert str(out) in result.stderr and "Traceback" not in result.stderr
    assert (out / "holiday.jpg").read_bytes() == b"precious"


def test_a_bad_override_names_the_key_without_a_traceback(tmp_path):
    result = run([SCENEGAN, "fid-real", "a", "b", "--params", str(REPO_ROOT / "params.yaml"),
                  "--set", "evaluate.n_sample=5"], tmp_path, check=False)
    assert result.returncode == 2
    assert "evaluate.n_sample" in result.stderr and "n_samples" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_copies_a_zip_into_the_raw_folder(tmp_path):
    import zipfile

    from PIL import Image

    Image.new("RGB", (80, 80), (10, 120, 200)).save(tmp_path / "sky.png")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        archive.write(tmp_path / "sky.png", "trip/sky.png")
    out = tmp_path / "raw"
    run([SCENEGAN, "data", "import", str(tmp_path / "photos.zip"), "--out", str(out),
         "--params", str(REPO_ROOT / "params.yaml")], tmp_path)
    assert (out / "trip" / "sky.png").is_file()


def test_the_cli_and_its_result_summaries_load_without_torch():
    """Data, version and listing commands start in about a second: torch and torch-fidelity cost several."""
    import subprocess

    check = ("import sys, flows.cli, flows.results, ganlib.versions.commit; "
             "heavy = sorted(m for m in ('torch', 'torch_fidelity') if m in sys.modules); "
             "assert not heavy, f'the CLI imported {heavy}'")
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True)
