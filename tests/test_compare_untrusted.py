"""`scenegan compare` reads other revisions' files: a crafted manifest must not steer where it writes or deletes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from conftest import REPO_ROOT, init_git_dvc_repo, load_test_params, run

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
    root = init_git_dvc_repo(tmp_path / "repo")
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


# --------------------------------------------------------------------------- compare.md shows names as text

HOSTILE_TAG = "<script>alert(1)</script>"  # a valid git tag name: anyone who can push can name one so
HOSTILE_VALUE = "x | y\n<img src=x onerror=alert(1)>\r\n[click](javascript:alert(2)) `code` \\| &lt;b&gt;"


def table_cells(line: str) -> list[str]:
    """A markdown table row split at its unescaped pipes (what a GFM renderer does), outer ones dropped."""
    cells, current, index = [], "", 0
    while index < len(line):
        if line[index] == "\\" and index + 1 < len(line):
            current += line[index:index + 2]
            index += 2
            continue
        if line[index] == "|":
            cells.append(current)
            current = ""
        else:
            current += line[index]
        index += 1
    cells.append(current)
    return cells[1:-1]


def test_hostile_tag_names_and_param_values_are_text_in_compare_md(tmp_path):
    import yaml

    root = init_git_dvc_repo(tmp_path / "repo")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["retrain"]["<script>key</script>"] = "0"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    commit(root, "plain")
    params["retrain"]["deployment_name"] = HOSTILE_VALUE
    params["retrain"]["<script>key</script>"] = "1|2"   # a revision's params are read as they are
    params["retrain"]["<b>added</b>"] = 1   # one side only: named in the footnote, escaped there too
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    commit(root, HOSTILE_TAG)

    settings = load_test_params(["compare.drift=false", "compare.include_history=false"])
    comparison = compare_versions(root, ["plain", HOSTILE_TAG], settings, plain_logger("tests"))
    assert comparison.rows[1].label == HOSTILE_TAG  # the data keeps the name as it is (CSV, JSON)
    markdown = comparison.to_markdown()

    for raw in ("<script", "</script", "<img", "<b>", "](javascript", "\r"):
        assert raw not in markdown, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    assert "&amp;lt;b&amp;gt;" in markdown  # an entity in the input is shown as typed, not decoded
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 2  # header, rule, one line per row: no line break got through
    widths = {len(table_cells(line)) for line in table}
    assert widths == {len(comparison.table_rows()[0])}, table  # no pipe opened an extra cell
    header = table_cells(table[0])
    assert " retrain.deployment\\_name " not in header and " retrain.deployment_name " in header
    assert " retrain.&lt;script&gt;key&lt;/script&gt; " in header
    hostile_row = dict(zip(header, table_cells(table[3])))
    assert hostile_row[" retrain.&lt;script&gt;key&lt;/script&gt; "] == " 1\\|2 "
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: added in this version: retrain.&lt;b&gt;added&lt;/b&gt;" in markdown


def test_markdown_text_escapes_only_what_changes_meaning():
    from ganlib.versions.compare import markdown_text

    assert markdown_text("218.8 [214.1, 223.9]") == "218.8 [214.1, 223.9]"  # brackets alone are text
    assert markdown_text("train.lr_g") == "train.lr_g"
    assert markdown_text("a\\|b") == "a\\\\\\|b"
    assert markdown_text("![x](http://tracker/p.png)") == "![x]\\(http://tracker/p.png)"
    assert markdown_text("<http://evil>") == "&lt;http://evil&gt;"
    assert markdown_text("one\ntwo\r\nthree\u2028four\x00") == "one two three four "
