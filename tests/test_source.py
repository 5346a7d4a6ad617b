"""ganlib.io.source: which project files a module runs, and a digest that ignores comments."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, load_test_params

from ganlib.io.source import import_closure, source_digest
from ganlib.training.checkpoint import TRAINING_ENTRY_MODULES, run_identity, training_code_digest


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_closure_follows_every_kind_of_project_import(tmp_path):
    write(tmp_path, {
        "ganlib/__init__.py": "",
        "ganlib/a.py": "import os\nfrom ganlib.pkg import sub, helper\n",
        "ganlib/pkg/__init__.py": "from .inner import thing\nhelper = 1\n",
        "ganlib/pkg/sub.py": "def f():\n    import ganlib.late  # function-level\n",
        "ganlib/pkg/inner.py": "from . import sibling\nthing = 2\n",
        "ganlib/pkg/sibling.py": "from ..c import *\n",
        "ganlib/late.py": "",
        "ganlib/c.py": "import torch\n",
        "ganlib/unused.py": "",
        "tasks/__init__.py": "",
        "tasks/t.py": "",
        "other/x.py": "",
    })
    found = [p.as_posix() for p in import_closure(["ganlib.a"], tmp_path)]
    assert found == [
        "ganlib/__init__.py", "ganlib/a.py", "ganlib/c.py", "ganlib/late.py", "ganlib/pkg/__init__.py",
        "ganlib/pkg/inner.py", "ganlib/pkg/sibling.py", "ganlib/pkg/sub.py",
    ]
    with pytest.raises(ValueError, match="ganlib.nope"):
        import_closure(["ganlib.nope"], tmp_path)


def test_training_closure_holds_the_models_and_the_gan_step():
    found = {p.as_posix() for p in import_closure(TRAINING_ENTRY_MODULES, REPO_ROOT)}
    assert {"ganlib/models/dcgan.py", "ganlib/models/resnet.py", "ganlib/training/step.py",
            "ganlib/training/losses.py", "ganlib/training/__main__.py", "ganlib/__init__.py"} <= found
    assert not any(name.startswith(("tasks/", "flows/")) for name in found)


def test_digest_ignores_comments_docstrings_and_formatting_but_not_code(tmp_path):
    source = REPO_ROOT / "ganlib/models/dcgan.py"
    copy = tmp_path / "ganlib/models/dcgan.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(source, copy)
    files = [Path("ganlib/models/dcgan.py")]
    before = source_digest(files, tmp_path)

    text = source.read_text()
    assert "nn.init.normal_(layer.weight, 0.0, 0.02)" in text
    cosmetic = (
        text.replace('"""DCGAN (Radford', '"""A reworded docstring. DCGAN (Radford')
        .replace("nn.init.normal_(layer.weight, 0.0, 0.02)", "nn.init.normal_(  # a new comment\n                layer.weight, 0.0, 0.02 )")
        + "\n# a trailing comment\n"
    )
    copy.write_text(cosmetic)
    assert source_digest(files, tmp_path) == before

    copy.write_text(text.replace("nn.init.normal_(layer.weight, 0.0, 0.02)", "nn.init.normal_(layer.weight, 0.0, 0.03)"))
    assert source_digest(files, tmp_path) != before


def test_run_identity_changes_with_the_training_code():
    params = load_test_params()
    same = run_identity(params, "ab" * 32, "code-1")
    assert same == run_identity(params, "ab" * 32, "code-1")
    edited = run_identity(params, "ab" * 32, "code-2")
    assert edited.fingerprint != same.fingerprint
    assert edited.compared["code.digest"] == "code-2"  # recorded in each checkpoint, named when a resume is refused
    assert run_identity(params, "ab" * 32).compared["code.digest"] == training_code_digest()
