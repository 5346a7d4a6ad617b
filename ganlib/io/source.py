"""The source code a stage runs: its static import closure, and a digest of that code.

`import_closure` reads files, never imports them: it walks every `import` and
`from ... import` in each file's syntax tree (function-level imports
included) and follows those that land inside the project's own packages.
What it cannot see is an import by computed name (`importlib.import_module`):
callers add such modules as entries themselves (flows/stage.py picks the
stage's flow module that way).

`source_digest` hashes the syntax tree of each file with docstrings dropped,
so comments, docstrings and formatting do not count: a reworded comment must
not throw away a training run of hours, while any change to what the code
does must. The tree's text form comes from the running Python's `ast`
module, so a different Python version may give a different digest.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Iterable, Sequence

# The top-level packages that are this project's code (everything else is a dependency).
PROJECT_PACKAGES = ("ganlib", "tasks", "flows")


def import_closure(
    entry_modules: Iterable[str], root: Path, packages: Sequence[str] = PROJECT_PACKAGES
) -> list[Path]:
    """Every project file the entry modules run, paths relative to `root`, sorted.

    Entries are dotted module names ("ganlib.training.loop"). Importing a
    module runs each enclosing package's __init__.py, so those are included
    (and followed) too. Raises ValueError for an entry that is not a file under `root`.
    """
    root = Path(root)
    pending: list[str] = []
    for name in entry_modules:
        if module_file(name, root) is None:
            raise ValueError(f"{name}: no such module under {root}")
        pending.append(name)
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        if name in seen or name.split(".")[0] not in packages:
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:  # `from pkg import name` where name is not a submodule
            continue
        files.add(path.relative_to(root))
        pending.extend(_enclosing_packages(name))
        is_package = path.name == "__init__.py"
        pending.extend(_imported_modules(ast.parse(path.read_bytes(), str(path)), name, is_package))
    return sorted(files, key=lambda p: p.as_posix())


def source_digest(files: Iterable[Path], root: Path) -> str:
    """sha256 (hex) over each file's path and syntax tree without docstrings, in the given order.

    Comments, docstrings and formatting leave it unchanged; any other edit,
    or a file added, removed or renamed, changes it.
    """
    digest = hashlib.sha256()
    for relative in files:
        path = Path(root) / relative
        tree = _without_docstrings(ast.parse(path.read_bytes(), str(path)))
        digest.update(Path(relative).as_posix().encode() + b"\0")
        digest.update(ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()


def module_file(name: str, root: Path) -> Path | None:
    """root/a/b.py or root/a/b/__init__.py for module "a.b", or None when neither exists."""
    base = Path(root).joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    as_file = base.with_name(base.name + ".py")
    return as_file if as_file.is_file() else None


def _enclosing_packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_modules(tree: ast.Module, module: str, is_package: bool) -> list[str]:
    """Candidate module names of every import in `tree` (some are attributes: the caller skips those)."""
    # Relative imports count from the module's package (a package's own name for its __init__).
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            names.append(base)
            # `from pkg import name` imports pkg.name when that is a submodule.
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]
    return tree
