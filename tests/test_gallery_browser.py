"""The published gallery in a real browser: headless Chromium renders it, every image loads, no console errors.

The page is served over HTTP from 127.0.0.1 and driven through the Chrome
DevTools protocol (a websocket; `websockets` comes with Prefect), so the test
reads the browser's own view: `naturalWidth` of every image, console
messages, uncaught exceptions and failed requests.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from test_publish import publish, write_metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not on PATH (install it with `apt-get install chromium chromium-driver` or `make browser`)",
)
SCREENSHOT = Path(tempfile.gettempdir()) / "gallery.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
    "--window-size=1280,1600", "--remote-debugging-port=0", "--remote-allow-origins=*",
]
STARTUP_TIMEOUT_S = 30
PAGE_TIMEOUT_S = 30


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def headless_chromium(profile: Path) -> Iterator[str]:
    """Start Chromium; yield its DevTools HTTP endpoint. The port is read from DevToolsActivePort."""
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"chromium did not start: {process.communicate()[1].decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


class DevToolsPage:
    """A minimal DevTools protocol client for one page: commands, and the events that arrive meanwhile."""

    def __init__(self, websocket_url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(websocket_url, max_size=64 * 2**20, open_timeout=PAGE_TIMEOUT_S)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=PAGE_TIMEOUT_S))
            if message.get("id") == message_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv(timeout=PAGE_TIMEOUT_S))
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise AssertionError(f"no {method} within {PAGE_TIMEOUT_S} s")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, browser log errors and failed requests."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                found.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                found.append(f"request failed: {params.get('errorText')} {params.get('blockedReason', '')}")
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                found.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        return found

    def close(self) -> None:
        self.socket.close()


def open_page(devtools: str) -> DevToolsPage:
    with urllib.request.urlopen(f"{devtools}/json/list", timeout=PAGE_TIMEOUT_S) as response:
        targets = json.load(response)
    page = next(t for t in targets if t.get("type") == "page")
    return DevToolsPage(page["webSocketDebuggerUrl"])


IMAGES_STATE = """(() => {
  const images = [...document.images];
  return {
    count: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    rendering: images.map(i => getComputedStyle(i).imageRendering),
    displayed: images.map(i => [i.naturalWidth, i.getBoundingClientRect().width]),
    title: document.title,
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
    scripts: document.scripts.length,
    overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
  };
})()"""


def test_gallery_renders_every_image_loads_and_the_console_stays_clean(tmp_path):
    write_metrics(tmp_path, fid=42.0)
    gallery = tmp_path / "gallery"
    for attempt in range(2):   # the second release gives the page a history table with links
        publish(tmp_path, str(gallery), overrides=("publish.n_samples=6", "publish.display_scale=4"))

    with serve_directory(gallery) as site, headless_chromium(tmp_path / "profile") as devtools:
        page = open_page(devtools)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.send(f"{domain}.enable")
            page.send("Page.navigate", url=f"{site}/index.html")
            page.wait_for_event("Page.loadEventFired")
            state = page.evaluate(IMAGES_STATE)
            shot = page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
            problems = page.problems()
        finally:
            page.close()

    assert state["title"].startswith("scenegan gallery")
    assert state["count"] == 1 + 1 + 6                      # grid, interpolation strip, samples
    assert state["broken"] == []
    assert set(state["rendering"]) == {"pixelated"}        # upscaled with nearest neighbour, not blurred
    sample_widths = state["displayed"][2:]
    assert all(shown == natural * 4 for natural, shown in sample_widths), sample_widths
    assert state["headings"][:4] == ["Metrics", "Samples from fixed seeds",
                                     "Latent interpolation (slerp between fixed latents, one pair per row)",
                                     "Individual samples"]
    assert "Earlier releases" in state["headings"]
    assert state["scripts"] == 0 and not state["overflow"]
    assert problems == []
    assert SCREENSHOT.stat().st_size > 0
