"""`python -m flows.server -- CMD`: one real Prefect server for the command's duration, gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # starts a real `prefect server` (about 10 s)

PROBE = (
    "import os, sys, urllib.request\n"
    "url = os.environ['PREFECT_API_URL']\n"
    "print(url)\n"
    "assert urllib.request.urlopen(url + '/health', timeout=5).read() == b'true'\n"
    "sys.exit(3)\n"
)


def test_command_runs_against_a_server_that_stops_with_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # the server's database, not the user's
    result = subprocess.run([sys.executable, "-m", "flows.server", "--", sys.executable, "-c", PROBE],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]  # the command's own exit status
    api_url = result.stdout.strip().splitlines()[-1]
    assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api")
    with pytest.raises(OSError):
        urllib.request.urlopen(api_url + "/health", timeout=2)


def test_an_existing_server_is_used_as_it_is(tmp_path):
    env = dict(os.environ, PREFECT_API_URL="http://127.0.0.1:9/api")
    result = subprocess.run(
        [sys.executable, "-m", "flows.server", "--", sys.executable, "-c", "import os; print(os.environ['PREFECT_API_URL'])"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip() == "http://127.0.0.1:9/api"
