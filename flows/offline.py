"""Keep Prefect from reaching for the network.

Without PREFECT_API_URL every flow starts a temporary local server; that
server's telemetry service otherwise tries to phone home, which on an
offline machine fills the console with tracebacks. The variable must be in
the environment before the server process starts, so the entry points call
this first.
"""

from __future__ import annotations

import os


def keep_prefect_offline() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
