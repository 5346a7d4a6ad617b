"""The dependency arrows inside ganlib point one way (DESIGN.md, "Dependency direction").

io/config at the bottom; data and models; training (uses data, models);
metrics (uses data, models, never training); generation (uses models, never
training or metrics); publish, versions and stages on top. Training must not reach metrics: a run is keyed by the code training
reaches (ganlib/io/source.py), and the metrics code must be free to change
without restarting days of training. The check follows every import, also
function-level and indirect ones, by reading the files (no import happens).
And the library never loads Prefect: tasks/ and flows/ wrap it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from ganlib.io.source import import_closure

BOTTOM = ("ganlib.config", "ganlib.errors", "ganlib.logs", "ganlib.progress", "ganlib.formatting", "ganlib.io",
          "ganlib.hardware")
# package -> the ganlib packages its code may never reach
FORBIDDEN = {
    "ganlib.io": ("ganlib.data", "ganlib.models", "ganlib.training", "ganlib.metrics", "ganlib.publish",
                  "ganlib.versions", "ganlib.stages", "ganlib.generation"),
    "ganlib.hardware": ("ganlib.data", "ganlib.models", "ganlib.training", "ganlib.metrics", "ganlib.publish",
                        "ganlib.versions", "ganlib.stages", "ganlib.generation"),
    "ganlib.data": ("ganlib.models", "ganlib.training", "ganlib.metrics", "ganlib.publish", "ganlib.versions",
                    "ganlib.stages", "ganlib.generation"),
    "ganlib.models": ("ganlib.data", "ganlib.training", "ganlib.metrics", "ganlib.publish", "ganlib.versions",
                      "ganlib.stages", "ganlib.generation"),
    "ganlib.training": ("ganlib.metrics", "ganlib.publish", "ganlib.versions", "ganlib.stages", "ganlib.generation"),
    "ganlib.metrics": ("ganlib.training", "ganlib.publish", "ganlib.versions", "ganlib.stages", "ganlib.generation"),
    # Images and walks from a trained generator: above models/data/io, below publish (which embeds its walk).
    "ganlib.generation": ("ganlib.training", "ganlib.metrics", "ganlib.publish", "ganlib.versions", "ganlib.stages"),
}


def modules_of(package: str) -> list[str]:
    folder = REPO_ROOT.joinpath(*package.split("."))
    return sorted(
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in folder.rglob("*.py")
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_reaches_the_layers_above_it(package):
    reached = {path.with_suffix("").as_posix().replace("/", ".") for path in import_closure(modules_of(package), REPO_ROOT)}
    bad = sorted(name for name in reached if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]))
    assert not bad, f"{package} reaches {', '.join(bad)}; its arrows must point down (DESIGN.md)"


def test_the_bottom_layer_reaches_nothing_above_it():
    reached = {path.with_suffix("").as_posix().replace("/", ".") for path in
               import_closure([m for p in BOTTOM for m in (modules_of(p) if "." in p and
                               REPO_ROOT.joinpath(*p.split(".")).is_dir() else [p])], REPO_ROOT)}
    allowed = ("ganlib.__init__", "ganlib", *BOTTOM)
    bad = sorted(name for name in reached if not any(name == a or name.startswith(a + ".") for a in allowed))
    assert not bad, f"the bottom layer reaches {', '.join(bad)}"


def test_ganlib_never_imports_prefect():
    modules = sorted(
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO_ROOT / "ganlib").rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(loaded[:5])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ganlib pulled in Prefect: {result.stdout}{result.stderr[-2000:]}"
