"""The one error boundary of every entry point: `scenegan` (flows/cli.py) and `python -m flows.stage`.

A UserFacingError (bad params, arguments or files, a device this machine
lacks, a full disk) is one line on stderr and exit status 2; with --json,
stdout holds `{"ok": false, "error": "..."}`. Anything else is a bug: its
traceback goes to the log (stderr), never to stdout, and the message to
stdout as `{"ok": false, "error": "...", "kind": "internal"}`, exit status 1.
So a script reading --json output always gets exactly one document.

Its own module, apart from flows/output.py's result formatting, because
every DVC stage runs it (and so depends on this file): a change to how a
summary is formatted must not re-run the stages.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, TextIO

from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger

# Exit statuses: a problem the user can fix (bad params, arguments, files), and a bug.
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)


def emit_error(message: str, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None,
               label: str = "scenegan", kind: str | None = None, details: dict | None = None) -> None:
    """`LABEL: message` on stderr; with --json also `{"ok": false, "error": ...}` (and "kind", and an
    error's own `details` such as the entries a check refused, if given) on stdout."""
    print(f"{label}: {message}", file=sys.stderr if stderr is None else stderr)
    if as_json:
        document = {"ok": False, "error": message, **({"kind": kind} if kind else {}), **(details or {})}
        print(json.dumps(document), file=sys.stdout if stdout is None else stdout)


def run_guarded(work: Callable[[], None], as_json: bool, label: str = "scenegan", note: str = "") -> int:
    """Run an entry point's `work` and return its exit status, every error reported the same way.

    `work` prints its own result. A UserFacingError gives its message (and
    `note`, which says what else a user should know, e.g. what DVC did) and
    EXIT_USER_ERROR. Any other exception gives its traceback in the log, a
    one-line "internal error" (kind "internal" in JSON) and EXIT_INTERNAL_ERROR:
    it is a bug, and the traceback is what a report of it needs.
    """
    try:
        work()
    except UserFacingError as exc:
        emit_error(" ".join(filter(None, [str(exc), note])), as_json, label=label,
                   details=getattr(exc, "json_details", None))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        emit_error(" ".join(filter(None, ["interrupted", note])), as_json, label=label, kind="interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: whatever escaped is a bug, reported rather than dumped
        plain_logger().error("%s: internal error, traceback follows", label, exc_info=exc)
        message = f"internal error (a bug: its traceback is in the log, on stderr): {type(exc).__name__}: {exc}"
        emit_error(" ".join(filter(None, [message, note])), as_json, label=label, kind="internal")
        return EXIT_INTERNAL_ERROR
    return 0
