"""ganlib.io.source: which project files a result depends on, and a digest that only moves with their code."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, load_test_params

from ganlib.io.source import (
    NEVER_SHAPES_RESULTS,
    CodeDigest,
    code_digest,
    file_code_digest,
    import_closure,
    module_file,
    result_code_files,
)
from ganlib.metrics.reference import FEATURE_CODE_ENTRIES
from ganlib.training.checkpoint import TRAINING_CODE_ENTRIES, run_identity, training_code


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
    # An excluded module is neither listed nor followed (ganlib.c is only reached through it).
    found = [p.as_posix() for p in import_closure(["ganlib.a"], tmp_path, excluded=["ganlib.pkg.sibling"])]
    assert "ganlib/pkg/sibling.py" not in found and "ganlib/c.py" not in found
    with pytest.raises(ValueError, match="ganlib.nope"):
        import_closure(["ganlib.nope"], tmp_path)


def test_every_module_said_never_to_shape_a_result_exists():
    """A renamed module would silently leave the list and enter every identity."""
    missing = [name for name in NEVER_SHAPES_RESULTS if module_file(name, REPO_ROOT) is None]
    assert not missing, f"NEVER_SHAPES_RESULTS names modules that do not exist: {missing}"


def test_training_is_keyed_by_the_code_that_shapes_the_weights_and_nothing_else():
    found = {p.as_posix() for p in result_code_files(TRAINING_CODE_ENTRIES, REPO_ROOT)}
    weight_shaping = {
        "ganlib/models/dcgan.py", "ganlib/models/resnet.py", "ganlib/models/r3gan.py", "ganlib/training/step.py",
        "ganlib/training/losses.py", "ganlib/training/schedule.py", "ganlib/training/ema.py",
        "ganlib/training/diffaugment.py", "ganlib/training/real_batches.py", "ganlib/data/dataset.py",
        "ganlib/training/loop.py",
    }
    assert weight_shaping <= found
    never = {"ganlib/metrics/weights.py", "ganlib/training/launch.py", "ganlib/training/checkpoint.py",
             "ganlib/hardware/probe.py", "ganlib/logs.py", "ganlib/config.py", "ganlib/io/atomic.py"}
    assert not never & found
    assert not any(name.startswith(("tasks/", "flows/", "ganlib/metrics/", "ganlib/publish/", "ganlib/stages/"))
                   for name in found)


def test_reference_statistics_are_keyed_by_the_feature_code_and_not_by_the_architectures():
    found = {p.as_posix() for p in result_code_files(FEATURE_CODE_ENTRIES, REPO_ROOT)}
    assert {"ganlib/metrics/extractors.py", "ganlib/metrics/features.py", "ganlib/metrics/sources.py",
            "ganlib/metrics/dinov2.py"} <= found
    assert not {"ganlib/models/dcgan.py", "ganlib/models/r3gan.py", "ganlib/metrics/weights.py",
                "ganlib/training/loop.py"} & found


MODULE = '''\
"""A module docstring."""

import math


def scale(x, factor=2):
    """What it does."""
    if x < 0:
        raise ValueError(f"x must be >= 0, got {x}")
    log.info("scaling %s by %s", x, factor)
    return math.sqrt(x) * factor + 1
'''


def test_comments_docstrings_blank_lines_and_messages_do_not_change_the_digest():
    cosmetic = '''\
# a new header comment
"""Another module docstring,
over two lines."""
import math



def scale(x,
          factor = 2):  # trailing comment
    """Reworded."""

    if x < 0:
        raise ValueError("negative input: " + str(x))  # other error text
    log.info('now scaling %s (factor %s)', x, factor)
    return math.sqrt(
        x) * factor + 1
'''
    assert file_code_digest(cosmetic.encode()) == file_code_digest(MODULE.encode())
    # Indentation width is formatting too.
    assert file_code_digest(MODULE.replace("    ", "  ").encode()) == file_code_digest(MODULE.encode())


@pytest.mark.parametrize("edit", [
    ("* factor + 1", "* factor - 1"),          # a changed operator
    ("factor=2", "factor=3"),                  # a changed default
    ("if x < 0", "if x <= 0"),                 # a changed comparison
    ("math.sqrt(x)", "math.sqrt(abs(x))"),     # a new call
    ("import math\n", "import math\nSEED = 1\n"),  # a new statement
])
def test_a_change_to_what_the_code_does_changes_the_digest(edit):
    old, new = edit
    assert old in MODULE
    assert file_code_digest(MODULE.replace(old, new).encode()) != file_code_digest(MODULE.encode())


def test_string_values_that_are_not_messages_count():
    """A string the code computes with (a mode name, a dict key) is code, unlike a log line."""
    source = 'def pad(x):\n    return F.pad(x, (1, 1), mode="reflect")\n'
    assert file_code_digest(source.replace("reflect", "replicate").encode()) != file_code_digest(source.encode())
    # ...and quote style is formatting.
    assert file_code_digest(source.replace('"reflect"', "'reflect'").encode()) == file_code_digest(source.encode())


def test_f_strings_that_compute_count_whatever_python_tokenizes_them_into():
    """Python 3.12 splits an f-string into several tokens; the digest takes it whole, as 3.11 does."""
    source = textwrap.dedent('''\
        def key(a, b):
            return f"{a}-{b:>4}"
    ''')
    assert file_code_digest(source.encode()) != file_code_digest(source.replace("-{b", "_{b").encode())
    assert file_code_digest(source.encode()) == file_code_digest(source.replace("return", "return ").encode())


def test_a_renamed_added_or_removed_file_changes_the_overall_digest(tmp_path):
    write(tmp_path, {"ganlib/a.py": "x = 1\n", "ganlib/b.py": "y = 2\n"})
    both = code_digest([Path("ganlib/a.py"), Path("ganlib/b.py")], tmp_path)
    assert code_digest([Path("ganlib/b.py"), Path("ganlib/a.py")], tmp_path) == both  # order does not matter
    assert code_digest([Path("ganlib/a.py")], tmp_path).digest != both.digest
    write(tmp_path, {"ganlib/c.py": "y = 2\n"})
    assert code_digest([Path("ganlib/a.py"), Path("ganlib/c.py")], tmp_path).digest != both.digest


def test_changed_files_names_what_differs():
    before = CodeDigest("1", {"a.py": "x", "b.py": "y", "gone.py": "z"})
    after = CodeDigest("2", {"a.py": "x", "b.py": "Y", "new.py": "w"})
    assert after.changed_files(before.files) == ["b.py", "gone.py", "new.py"]


def test_the_real_training_code_digest_ignores_an_appended_comment(tmp_path):
    """The issue's own check, on a copy of the repository's code: loop.py with a comment is the same run."""
    shutil.copytree(REPO_ROOT / "ganlib", tmp_path / "ganlib", ignore=shutil.ignore_patterns("__pycache__"))
    before = training_code(tmp_path)
    loop = tmp_path / "ganlib/training/loop.py"
    loop.write_text(loop.read_text() + "\n# a comment appended by a git pull\n")
    (tmp_path / "ganlib/metrics/weights.py").write_text("# a rewritten downloader\n")
    assert training_code(tmp_path) == before
    losses = tmp_path / "ganlib/training/losses.py"
    text = losses.read_text()
    assert "F.softplus(-fake)" in text
    losses.write_text(text.replace("F.softplus(-fake)", "F.relu(-fake)", 1))
    changed = training_code(tmp_path)
    assert changed.digest != before.digest and changed.changed_files(before.files) == ["ganlib/training/losses.py"]


def test_run_identity_changes_with_the_training_code():
    params = load_test_params()
    one, two = CodeDigest("1" * 64, {"a.py": "1"}), CodeDigest("2" * 64, {"a.py": "2"})
    same = run_identity(params, "ab" * 32, one)
    assert same == run_identity(params, "ab" * 32, one)
    edited = run_identity(params, "ab" * 32, two)
    assert edited.fingerprint != same.fingerprint
    assert edited.compared["code.digest"] == "2" * 64  # recorded in each checkpoint, named when a resume is refused
    assert run_identity(params, "ab" * 32).compared["code.digest"] == training_code().digest


def other_pythons() -> list[str]:
    """Interpreters of other Python versions on this machine (pyenv's, or python3.N on PATH)."""
    import glob
    import sys

    found = {path for path in glob.glob(str(Path.home() / ".pyenv/versions/3.*/bin/python3.[0-9]*"))
             if path.rsplit("python", 1)[1].replace(".", "").isdigit()}
    found |= {path for minor in range(9, 16) if (path := shutil.which(f"python3.{minor}"))}
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return sorted(path for path in found if not path.endswith(mine))


DIGEST_ELSEWHERE = """
import importlib.util, json, sys
from pathlib import Path
root = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("source_elsewhere", root / "ganlib/io/source.py")
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
print(json.dumps([module.result_code_digest(entries, root).files for entries in json.loads(sys.argv[2])]))
"""


def test_the_digest_is_the_same_under_every_python_version_on_this_machine():
    """Upgrading Python must not restart training or recompute reference statistics."""
    import json
    import subprocess

    from ganlib.io.source import result_code_digest

    pythons = [p for p in other_pythons() if subprocess.run([p, "-c", "import sys; sys.exit(sys.version_info < (3, 9))"],
                                                            capture_output=True).returncode == 0]
    if not pythons:
        pytest.skip("no other Python 3.9+ interpreter on this machine to compare with")
    entries = [list(TRAINING_CODE_ENTRIES), list(FEATURE_CODE_ENTRIES)]
    here = [result_code_digest(e, REPO_ROOT).files for e in entries]
    for python in pythons:
        result = subprocess.run([python, "-c", DIGEST_ELSEWHERE, str(REPO_ROOT), json.dumps(entries)],
                                capture_output=True, text=True, check=True)
        assert json.loads(result.stdout) == here, f"{python} digests the code differently"
