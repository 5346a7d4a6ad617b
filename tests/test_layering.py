"""ganlib is the library: importing every module of it must not pull in Prefect."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


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
