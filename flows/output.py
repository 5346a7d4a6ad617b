"""How a `scenegan` command hands its result to a person or a program.

Each command returns a CommandResult: a few lines for a person (counts,
where things went, what to run next) and the complete result as data.
`emit` prints one or the other on stdout; with --json stdout holds exactly
one JSON document, `{"ok": true, ...}` or, on a user-facing error,
`{"ok": false, "error": "..."}`, so a script can always parse it.

Errors are printed by the entry points' one boundary, flows/boundary.py.

`to_jsonable` converts explicitly (paths to strings, dataclasses to
objects, tuples to lists) and refuses a type it does not know, rather than
writing some object's repr into the document.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable, Mapping, TextIO

MAX_EXAMPLES = 3


@dataclass(frozen=True)
class CommandResult:
    """What a command prints: `lines` for people, `data` (JSON-able after to_jsonable) for --json.

    `next_steps` are commands to run next: shown as `Next: ...` lines, and
    as the "next" list in the JSON document.
    """

    lines: list[str]
    data: Mapping[str, Any]
    next_steps: list[str] = field(default_factory=list)


def emit(result: CommandResult, as_json: bool, stream: TextIO | None = None) -> None:
    """Print the human lines, or the JSON document, on `stream` (default: stdout)."""
    stream = sys.stdout if stream is None else stream
    if as_json:
        document = {"ok": True, **to_jsonable(result.data)}
        if result.next_steps:
            document["next"] = list(result.next_steps)
        stream.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
        return
    lines = [*result.lines, *(f"Next: {step}" for step in result.next_steps)]
    if lines:
        stream.write("\n".join(lines) + "\n")


def to_jsonable(value: Any) -> Any:
    """`value` as JSON types: paths as strings, dataclasses as objects, tuples and sets as lists.

    Non-finite floats become null (JSON has no NaN). Any other type is a
    TypeError: a result that holds one needs a deliberate conversion here.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(item) for item in value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars, without importing numpy
        return to_jsonable(value.item())
    raise TypeError(f"to_jsonable: no JSON form for {type(value).__name__}; convert it explicitly")


def examples(items: Iterable[str], count: int, limit: int = MAX_EXAMPLES) -> str:
    """`a.txt, b.txt, c.txt, ...`: at most `limit` of `count` items, with an ellipsis when there are more."""
    shown = [str(item) for _, item in zip(range(limit), items)]
    return ", ".join(shown) + (", ..." if count > len(shown) else "")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 file`, `3 files`."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def byte_size(n_bytes: int) -> str:
    """`950 B`, `186 kB`, `12.3 MB`, `1.4 GB` (decimal units, as file managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n_bytes} B"


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as a person wants to read it: relative to the working directory when inside it."""
    as_path = Path(path)
    if "://" in str(path) or not as_path.is_absolute():
        return str(path)
    try:
        return str(as_path.relative_to(Path.cwd()))
    except ValueError:
        return str(as_path)
