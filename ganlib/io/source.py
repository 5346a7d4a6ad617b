"""The code a result depends on, and a digest of it that only changes when that code does.

Two questions, one rule (DESIGN.md, "Run identity"):

* Which files? `result_code_files(entries)` is the static import closure of
  the modules that compute a result (the training loop, the feature
  extractors), not followed into NEVER_SHAPES_RESULTS: modules whose code
  cannot change a computed number (configuration schema, logging, errors,
  file writing, machine description and speed probes, launchers,
  downloaders, the checkpoint and generator file formats). A training run is
  keyed by the files the training loop reaches this way, the FID reference
  statistics by the files feature extraction reaches; both through this one
  helper.

* What about them? `code_digest` hashes each file's tokens (tokenize), not
  its text or its syntax tree: comments, blank lines, line breaks inside
  brackets, indentation width, quote style and docstrings are dropped, and so
  is the text of log messages, warnings, assertion messages and raised errors
  (a log line reworded is not new math). A token stream does not depend on
  the Python version the way `ast.dump` does; f-strings, which Python 3.12
  started to tokenize piece by piece, are taken whole as their source text.

`import_closure` reads files, never imports them: it walks every `import`
and `from ... import` in each file's syntax tree (function-level imports
included) and follows those that land inside the project's own packages.
What it cannot see is an import by computed name (`importlib.import_module`):
callers add such modules as entries themselves (flows/stage.py picks the
stage's flow module that way).
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# The top-level packages that are this project's code (everything else is a dependency).
PROJECT_PACKAGES = ("ganlib", "tasks", "flows")

# Modules (or whole packages) whose code does not shape any number a stage
# computes. A run's identity stops at them: editing one must never restart
# training or recompute reference statistics. Each entry says why it is safe.
NEVER_SHAPES_RESULTS: tuple[str, ...] = (
    "ganlib.config",                 # the schema; the values it validates are keyed themselves
    "ganlib.errors",                 # exception classes
    "ganlib.logs",                   # log setup
    "ganlib.progress",               # progress lines
    "ganlib.io",                     # file writing, provenance, subprocesses, this module
    "ganlib.hardware",               # machine description and speed probes: their choice is a recorded param
    "ganlib.training.checkpoint",    # checkpoint file format and run bookkeeping
    "ganlib.training.divergence",    # when to stop a diverged run: it stops, it computes nothing
    "ganlib.training.launch",        # how processes start (torchrun, schedulers)
    "ganlib.training.monitor",       # tick grids and the collapse indicator: reads G_ema, draws nothing shared
    "ganlib.training.speed",         # the precision probe: its choice is keyed as train.precision
    "ganlib.training.throughput",    # log warnings about a busy machine
    "ganlib.models.generator_file",  # the published generator's file format
    "ganlib.metrics.errors",         # exception classes
    "ganlib.metrics.speed",          # the extractor precision probe: its choice is part of the extractor identity
    "ganlib.metrics.weight_files",   # finding and verifying weight files: their checksum is keyed instead
    "ganlib.metrics.weights",        # installing weight files (downloads)
)

# Calls whose string arguments are text for people, not inputs to a computation.
_TEXT_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
_TEXT_FUNCTIONS = frozenset({"print"})
_STRING_START_TOKENS = frozenset(
    getattr(tokenize, name) for name in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, name))
_STRING_END_TOKENS = frozenset(
    getattr(tokenize, name) for name in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, name))
_DROPPED_TOKENS = frozenset({tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER})


@dataclass(frozen=True)
class CodeDigest:
    """A digest over some files' code, and each file's own, so that a change can be named."""

    digest: str                  # sha256 hex over every (path, file digest)
    files: dict[str, str]        # posix path relative to the root -> sha256 hex of its tokens

    def changed_files(self, earlier: Mapping[str, str]) -> list[str]:
        """Paths whose code differs from `earlier` (a `files` map), added and removed ones included."""
        paths = sorted(set(self.files) | set(earlier))
        return [path for path in paths if self.files.get(path) != earlier.get(path)]


def result_code_files(entry_modules: Iterable[str], root: Path) -> list[Path]:
    """The files whose code shapes what `entry_modules` compute: their closure, stopped at NEVER_SHAPES_RESULTS."""
    return import_closure(entry_modules, root, excluded=NEVER_SHAPES_RESULTS)


def result_code_digest(entry_modules: Iterable[str], root: Path) -> CodeDigest:
    """code_digest of result_code_files: the one identity rule for training runs and reference statistics."""
    return code_digest(result_code_files(entry_modules, root), root)


def import_closure(
    entry_modules: Iterable[str],
    root: Path,
    packages: Sequence[str] = PROJECT_PACKAGES,
    excluded: Sequence[str] = (),
) -> list[Path]:
    """Every project file the entry modules run, paths relative to `root`, sorted.

    Entries are dotted module names ("ganlib.training.loop"). Importing a
    module runs each enclosing package's __init__.py, so those are included
    (and followed) too. Modules in `excluded` (or inside an excluded package)
    are neither listed nor followed. Raises ValueError for an entry that is
    not a file under `root`.
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
        if name in seen or name.split(".")[0] not in packages or _is_within(name, excluded):
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


def code_digest(files: Iterable[Path], root: Path) -> CodeDigest:
    """Each file's token digest (see the module docstring), and one over all of them with their paths.

    A file added, removed or renamed changes the overall digest; so does any
    change to what a file's code does, but not to its comments, docstrings,
    formatting or the text it shows people.
    """
    per_file = {Path(relative).as_posix(): file_code_digest((Path(root) / relative).read_bytes())
                for relative in files}
    overall = hashlib.sha256()
    for path in sorted(per_file):
        overall.update(f"{path}\0{per_file[path]}\0".encode())
    return CodeDigest(overall.hexdigest(), per_file)


def file_code_digest(source: bytes) -> str:
    """sha256 hex of one module's normalised tokens."""
    digest = hashlib.sha256()
    for token in normalised_tokens(source):
        digest.update(token.encode() + b"\0")
    return digest.hexdigest()


def normalised_tokens(source: bytes) -> list[str]:
    """The module's tokens with everything that cannot change behaviour dropped or made canonical."""
    text = source.decode("utf-8-sig")
    lines = text.splitlines(keepends=True)
    docstrings, texts = _docstring_starts_and_text_spans(ast.parse(source), lines)
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    out: list[str] = []
    skipping_statement = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if skipping_statement:  # a docstring statement, up to and including its NEWLINE
            skipping_statement = token.type != tokenize.NEWLINE
            i += 1
            continue
        if token.type in _DROPPED_TOKENS:
            i += 1
            continue
        if token.start in docstrings:
            skipping_statement = True
            i += 1
            continue
        span = _span_holding(token.start, texts)
        if span is not None:
            out.append("<text>")
            while i < len(tokens) and _before(tokens[i].start, span[1]):
                i += 1
            continue
        if token.type in _STRING_START_TOKENS:  # Python >= 3.12: an f-string in pieces; take it whole
            end = _matching_string_end(tokens, i)
            out.append("STRING " + _source_between(lines, token.start, tokens[end].end))
            i = end + 1
            continue
        out.append(_canonical(token))
        i += 1
    return out


def module_file(name: str, root: Path) -> Path | None:
    """root/a/b.py or root/a/b/__init__.py for module "a.b", or None when neither exists."""
    base = Path(root).joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    as_file = base.with_name(base.name + ".py")
    return as_file if as_file.is_file() else None


# ----------------------------------------------------------------------------- tokens


def _canonical(token: tokenize.TokenInfo) -> str:
    name = tokenize.tok_name[token.type]
    if token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
        return name  # the structure, not the whitespace that spells it
    if token.type == tokenize.STRING and not _is_formatted(token.string):
        # 'a' and "a" (and implicit escapes) are the same value: hash the value.
        return f"STRING {ast.literal_eval(token.string)!r}"
    return f"{name} {token.string}"


def _is_formatted(literal: str) -> bool:
    prefix = literal[: len(literal) - len(literal.lstrip("rRbBuUfFtT"))]
    return any(letter in prefix.lower() for letter in "ft")


def _matching_string_end(tokens: list[tokenize.TokenInfo], start: int) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index].type in _STRING_START_TOKENS:
            depth += 1
        elif tokens[index].type in _STRING_END_TOKENS:
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unterminated f-string in token stream")


def _source_between(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (row_a, col_a), (row_b, col_b) = start, end
    if row_a == row_b:
        return lines[row_a - 1][col_a:col_b]
    return lines[row_a - 1][col_a:] + "".join(lines[row_a:row_b - 1]) + lines[row_b - 1][:col_b]


def _before(position: tuple[int, int], end: tuple[int, int]) -> bool:
    return position < end


def _span_holding(position: tuple[int, int], spans: list[tuple[tuple[int, int], tuple[int, int]]]):
    for span in spans:
        if span[0] <= position < span[1]:
            return span
    return None


# ----------------------------------------------------------------------------- syntax


def _docstring_starts_and_text_spans(tree: ast.Module, lines: list[str]):
    """Where docstring statements start, and the (start, end) of every string that is text for people.

    Positions are (line, column in characters), as tokenize gives them; `ast`
    counts columns in UTF-8 bytes, hence the conversion.
    """
    def position(line: int, byte_col: int) -> tuple[int, int]:
        return line, len(lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    docstrings: set[tuple[int, int]] = set()
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and _is_string(first.value):
                docstrings.add(position(first.lineno, first.col_offset))
        for text in _text_nodes(node):
            spans.append((position(text.lineno, text.col_offset), position(text.end_lineno, text.end_col_offset)))
    return docstrings, sorted(spans)


def _text_nodes(node: ast.AST) -> list[ast.expr]:
    """String literals in `node` that only say something to a person: raised errors, log calls, assertion messages."""
    if isinstance(node, ast.Raise):
        # What an exception says is text, including what it computes to say it: it is raised, not used.
        if isinstance(node.exc, ast.Call):
            return [*node.exc.args, *(k.value for k in node.exc.keywords)]
        return [s for part in (node.exc, node.cause) if part is not None for s in _strings_in(part)]
    if isinstance(node, ast.Assert) and node.msg is not None:
        return _strings_in(node.msg)
    if isinstance(node, ast.Call) and _is_text_call(node.func):
        return [s for arg in [*node.args, *(k.value for k in node.keywords)] for s in _strings_in(arg)]
    return []


def _is_text_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in _TEXT_METHODS
    return isinstance(func, ast.Name) and func.id in _TEXT_FUNCTIONS


def _strings_in(node: ast.AST) -> list[ast.expr]:
    """String and f-string literals in `node`, not looking inside an f-string (its parts are part of it)."""
    if _is_string(node):
        return [node]
    return [found for child in ast.iter_child_nodes(node) for found in _strings_in(child)]


def _is_string(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _is_within(name: str, modules: Sequence[str]) -> bool:
    return any(name == module or name.startswith(module + ".") for module in modules)


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
