"""`scenegan compare` reads other revisions' files: a crafted manifest must not steer where it writes or deletes."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from conftest import REPO_ROOT, load_test_params, run

from ganlib.logs import plain_logger
from ganlib.versions.compare import compare_versions

SETTINGS = [
    "evaluate.extractor=tiny-random-conv", "evaluate.device=cpu", "evaluate.n_reference=0",
    "evaluate.metrics=[fid]", "compare.drift=true", "compare.include_history=false",
]
VICTIM = "victimdir1234"  # 13 characters: "../" + VICTIM is the 16 a scratch copy's name is cut to


def write_prepared(root: Path, seed: int, images_sha256: str | None = None) -> None:
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.save(prepared / "images.npy", images)
    sha = hashlib.sha256((prepared / "images.npy").read_bytes()).hexdigest()
    manifest = dict(format="scenegan-prepared/1", count=4, resolution=16, data_md5=None,
                    images_sha256=images_sha256 or sha)
    (prepared / "manifest.json").write_text(json.dumps(manifest))


def commit(root: Path, tag: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", tag], root)
    run(["git", "tag", tag], root)


def test_crafted_images_sha256_is_refused_and_nothing_outside_scratch_is_deleted(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                 ["git", "config", "user.name", "tests"], [str(Path(sys.executable).with_name("dvc")), "init", "-q"]):
        run(args, root)
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_prepared(root, seed=1)
    commit(root, "a")
    write_prepared(root, seed=2, images_sha256="../" + VICTIM + "0" * 48)  # another revision's manifest, crafted
    commit(root, "b")
    write_prepared(root, seed=3)
    commit(root, "c")

    # Scratch copies go under the temporary directory: put it where the victim is its sibling.
    temp = tmp_path / "tmp"
    victim = temp / VICTIM
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    comparison = compare_versions(root, ["a", "b", "c"], load_test_params(SETTINGS), plain_logger("tests"))

    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]  # nothing written into it either
    b = comparison.rows[1]
    assert b.n_images is None  # no usable prepared dataset at b
    assert any("not 64 hexadecimal characters" in note for note in b.notes), b.notes
