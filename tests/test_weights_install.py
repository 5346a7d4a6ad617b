"""`install --metric`: published weights fetched on demand, verified, installed atomically; a local server stands in.

Nothing here reaches the internet: every download comes from an http.server
on 127.0.0.1, through an injected URL table with the checksum of the file it
serves.
"""

from __future__ import annotations

import errno
import hashlib
import re
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO_ROOT, load_test_params

from ganlib.logs import plain_logger
from ganlib.metrics import weight_files, weights
from ganlib.metrics.weights import (
    UPSTREAM_WEIGHTS,
    UpstreamWeights,
    WeightsError,
    install_metric_weights,
    install_upstream_weights,
)

LOG = plain_logger("scenegan-tests")
PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: more than one read block
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class WeightsServer:
    """Serves PAYLOAD at /w.pth; records each request's Range header; can honour Range or not, or cut the body short.

    Also: /moved redirects to `redirect_to`; `extra` bytes follow the body with no Content-Length
    (a server sending more than the file); `gate`, when set, holds the body after its first 64 kB until released.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None  # send a full Content-Length, then only this many bytes
        self.extra = b""
        self.redirect_to = ""
        self.gate: threading.Event | None = None
        self.gate_reached = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path != "/w.pth":
                    self.send_error(404)
                    return
                if server.extra:
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(PAYLOAD + server.extra)
                    self.close_connection = True
                    return
                start = int(requested.removeprefix("bytes=").rstrip("-")) if requested and server.honour_range else 0
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                    self.end_headers()
                    return
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                body = body if server.cut_after is None else body[: server.cut_after]
                if server.gate is not None:
                    self.wfile.write(body[:65536])
                    self.wfile.flush()
                    server.gate_reached.set()
                    server.gate.wait(timeout=120)
                    body = body[65536:]
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base}/w.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def table(self, sha256: str = SHA256, url: str | None = None, max_size: int = 2 * len(PAYLOAD)) -> dict[str, UpstreamWeights]:
        return {"fd-dinov2": UpstreamWeights("w.pth", url or self.url, sha256, "test weights", max_size)}

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    served = WeightsServer()
    served.thread.start()
    yield served
    served.close()


@pytest.fixture(autouse=True)
def machine_cache(tmp_path, monkeypatch):
    """Each test its own per-machine cache: downloads in progress live there, named by sha256."""
    cache = tmp_path / "machine-cache"
    monkeypatch.setenv("SCENEGAN_CACHE_DIR", str(cache))
    return cache


def part_file(machine_cache) -> Path:
    return machine_cache / "downloads" / f"{SHA256}.part"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_is_verified_then_renamed_into_place(tmp_path, server, capsys):
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params_file)
    assert weights.main(["install", "--metric", "fd_dinov2", "--params", str(params_file)], urls=server.table()) == 0

    target = tmp_path / load_test_params().base.paths.weights / "w.pth"
    assert target.read_bytes() == PAYLOAD
    assert list(target.parent.iterdir()) == [target]  # no .part left behind
    printed = capsys.readouterr().out
    assert "fd-dinov2: downloaded w.pth" in printed and f"{len(PAYLOAD):,} bytes" in printed
    assert SHA256 in printed and str(target.parent) in printed and server.url in printed
    assert server.ranges == [None]

    # Installed and valid: nothing is fetched again.
    again = install_metric_weights("fd-dinov2", load_test_params(), LOG, tmp_path, urls=server.table())
    assert again.action == "already installed" and again.path == target and server.ranges == [None]


def test_is_weights_go_where_evaluate_inception_weights_points(tmp_path, server):
    table = {"is": server.table()["fd-dinov2"]}
    params = load_test_params(["evaluate.inception_weights=models/inception.pth"])
    installed = install_metric_weights("is", params, LOG, tmp_path, urls=table)
    assert installed.path == tmp_path / "models/inception.pth" and installed.path.read_bytes() == PAYLOAD


def test_an_interrupted_download_is_resumed_with_a_range_request(tmp_path, server, machine_cache):
    target = tmp_path / "w" / "w.pth"
    server.cut_after = 300_000
    with pytest.raises(WeightsError, match=r"interrupted after 300,000 bytes.*run the same command again to resume"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table(), timeout=5)
    part = part_file(machine_cache)
    assert part.stat().st_size == 300_000 and not target.exists()
    # The weights folder is tracked by DVC: nothing of a download in progress appears in it.
    assert not target.parent.exists() or list(target.parent.iterdir()) == []

    server.cut_after = None
    installed = install_upstream_weights("fd-dinov2", target, LOG, server.table())
    assert server.ranges == [None, "bytes=300000-"]
    assert installed.action == "resumed" and installed.sha256 == SHA256
    assert target.read_bytes() == PAYLOAD and not part.exists()


def test_a_part_file_is_continued_and_a_server_without_range_restarts(tmp_path, server, machine_cache):
    target = tmp_path / "w.pth"
    part_file(machine_cache).parent.mkdir(parents=True)
    part_file(machine_cache).write_bytes(PAYLOAD[:1000])
    assert install_upstream_weights("fd-dinov2", target, LOG, server.table()).action == "resumed"
    assert server.ranges == ["bytes=1000-"] and target.read_bytes() == PAYLOAD

    target.unlink()
    part_file(machine_cache).write_bytes(b"x" * 1000)  # wrong bytes: appending to them could never verify
    server.honour_range = False
    installed = install_upstream_weights("fd-dinov2", target, LOG, server.table())
    assert installed.action == "downloaded" and target.read_bytes() == PAYLOAD


def test_a_checksum_mismatch_installs_nothing_and_deletes_the_part_file(tmp_path, server, capsys, machine_cache):
    target = tmp_path / "w" / "w.pth"
    with pytest.raises(WeightsError, match=f"has sha256 {SHA256}, expected {'0' * 64}; deleted it, installed nothing"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table("0" * 64))
    assert not target.parent.exists() and not part_file(machine_cache).exists()

    assert weights.main(["install", "--metric", "fd-dinov2", str(target.parent)], urls=server.table("0" * 64)) == 1
    assert "installed nothing" in capsys.readouterr().err
    assert not target.parent.exists() and not part_file(machine_cache).exists()


def test_offline_fails_saying_where_to_put_the_file(tmp_path, capsys):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    url = f"http://127.0.0.1:{closed_port()}/w.pth"
    table = {"clip": UpstreamWeights("clip.pt", url, SHA256, "test weights", len(PAYLOAD))}
    with pytest.raises(WeightsError) as err:  # a refused connection: no retry loop to wait through
        install_upstream_weights("clip", weights_dir / "clip.pt", LOG, table)
    message = str(err.value)
    assert f"could not reach {url}" in message and "installed nothing" in message.lower()
    assert str(weights_dir / "clip.pt") in message and SHA256 in message
    assert list(weights_dir.iterdir()) == []

    assert weights.main(["install", "--metric", "clip", str(weights_dir)], urls=table) == 1
    assert f"could not reach {url}" in capsys.readouterr().err


def test_http_errors_are_reported_with_the_manual_route(tmp_path, server):
    table = {"is": UpstreamWeights("w.pth", server.url + "-missing", SHA256, "test weights", len(PAYLOAD))}
    with pytest.raises(WeightsError, match=r"(?s)HTTP 404.*put it at\n  \S*w\.pth\nwith sha256 " + SHA256):
        install_upstream_weights("is", tmp_path / "w.pth", LOG, table)


def test_cli_keeps_make_weights_behaviour_and_refuses_mixed_options(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        weights.main(["install", "--metric", "is", "--wheel", "x.whl", str(tmp_path)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        weights.main(["install", "--metric", "no-such-metric", str(tmp_path)])
    assert exit_.value.code == 2


def test_pinned_table_matches_torch_fidelity():
    """URLs are torch-fidelity 0.4's own; each pinned sha256 agrees with the hash its URL or file name carries."""
    from torch_fidelity.feature_extractor_clip import MODEL_URLS
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    inception, dinov2, clip = UPSTREAM_WEIGHTS["is"], UPSTREAM_WEIGHTS["fd-dinov2"], UPSTREAM_WEIGHTS["clip"]
    assert inception.url == URL_INCEPTION_V3 and inception.url.endswith("/" + inception.file_name)
    assert inception.sha256.startswith(weight_files.TORCH_FIDELITY_INCEPTION_SHA256_PREFIX)
    assert inception.file_name.endswith(f"-{inception.sha256[:8]}.pth")  # torch.hub's naming: sha256 prefix
    assert clip.url == MODEL_URLS["clip-vit-b-32"] and f"/{clip.sha256}/" in clip.url
    assert dinov2.url.endswith("/dinov2_vitb14/" + dinov2.file_name)
    for entry in UPSTREAM_WEIGHTS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.sha256


def test_scenegan_weights_install_reports_for_people_and_json(tmp_path, server, monkeypatch, capsys):
    from flows.cli import main as scenegan

    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params_file)
    monkeypatch.setattr(weights, "UPSTREAM_WEIGHTS", server.table())
    assert scenegan(["weights", "install", "--metric", "fd_dinov2", "--params", str(params_file)]) == 0
    printed = capsys.readouterr().out
    assert "fd-dinov2: downloaded w.pth" in printed and "Next: add fd_dinov2 to evaluate.metrics" in printed

    monkeypatch.setattr(weights, "UPSTREAM_WEIGHTS",
                        {"fd-dinov2": UpstreamWeights("x.pth", f"http://127.0.0.1:{closed_port()}/x.pth", SHA256, "t", 1)})
    assert scenegan(["weights", "install", "--metric", "fd-dinov2", "--params", str(params_file), "--json"]) == 2
    captured = capsys.readouterr()
    import json

    document = json.loads(captured.out)
    assert document["ok"] is False and "put it at" in document["error"] and SHA256 in document["error"]


def test_the_cli_offers_exactly_the_metrics_with_published_weights():
    from flows.cli import WEIGHTS_METRICS

    assert sorted(WEIGHTS_METRICS) == sorted(UPSTREAM_WEIGHTS)


def test_a_second_concurrent_install_refuses_and_never_touches_the_first_ones_download(tmp_path, server, machine_cache):
    server.gate = threading.Event()  # the first download stalls after 64 kB, holding its lock
    first_target, second_target = tmp_path / "checkout-a" / "w.pth", tmp_path / "checkout-b" / "w.pth"
    outcome: dict[str, object] = {}

    def first_install() -> None:
        try:
            outcome["first"] = install_upstream_weights("fd-dinov2", first_target, LOG, server.table())
        except BaseException as exc:  # reported by the assertion below
            outcome["first"] = exc

    first = threading.Thread(target=first_install)
    first.start()
    try:
        assert server.gate_reached.wait(timeout=60)
        deadline = time.monotonic() + 60  # the first install opens its .part once the headers are in
        while not part_file(machine_cache).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        part_before = part_file(machine_cache).stat().st_size
        with pytest.raises(WeightsError, match=r"another install is downloading test weights \(pid \d+ on .*Wait for it to finish"):
            install_upstream_weights("fd-dinov2", second_target, LOG, server.table())
        assert part_file(machine_cache).stat().st_size == part_before and len(server.ranges) == 1
        assert not second_target.exists()
    finally:
        server.gate.set()
        first.join(timeout=120)
    assert isinstance(outcome["first"], weights.InstalledWeights), outcome["first"]
    assert first_target.read_bytes() == PAYLOAD and not part_file(machine_cache).exists()

    # Once the first is done, the second goes ahead (the kernel released the lock).
    server.gate = None
    assert install_upstream_weights("fd-dinov2", second_target, LOG, server.table()).action == "downloaded"
    assert second_target.read_bytes() == PAYLOAD


def test_a_lock_left_by_a_killed_install_does_not_block_the_next(tmp_path, server, machine_cache):
    downloads = machine_cache / "downloads"
    code = (
        "import fcntl, os, sys\n"
        f"lock = open({str(downloads / (SHA256 + '.lock'))!r}, 'a+')\n"
        "fcntl.flock(lock.fileno(), fcntl.LOCK_EX)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    downloads.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert install_upstream_weights("fd-dinov2", tmp_path / "w.pth", LOG, server.table()).action == "downloaded"


def test_a_server_announcing_more_than_the_expected_size_is_refused(tmp_path, server, machine_cache):
    target = tmp_path / "weights" / "w.pth"
    with pytest.raises(WeightsError, match=rf"announces {len(PAYLOAD):,} bytes; test weights is at most 1,000: refused, installed nothing"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table(max_size=1000))
    assert not target.exists() and not part_file(machine_cache).exists()


def test_a_server_sending_more_than_the_expected_size_is_cut_off_and_refused(tmp_path, server, machine_cache):
    server.extra = b"x" * (3 << 20)  # no Content-Length: the body just goes on
    target = tmp_path / "weights" / "w.pth"
    with pytest.raises(WeightsError, match=rf"sent more than {len(PAYLOAD):,} bytes.*refused, installed nothing"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table(max_size=len(PAYLOAD)))
    assert not target.exists() and not part_file(machine_cache).exists()


def test_a_partial_file_larger_than_the_expected_size_is_started_again(tmp_path, server, machine_cache):
    part_file(machine_cache).parent.mkdir(parents=True)
    part_file(machine_cache).write_bytes(b"x" * (len(PAYLOAD) + 1))
    installed = install_upstream_weights("fd-dinov2", tmp_path / "w.pth", LOG, server.table(max_size=len(PAYLOAD)))
    assert installed.action == "downloaded" and server.ranges == [None]


def test_plain_http_redirects_are_followed(tmp_path, server):
    server.redirect_to = server.url
    installed = install_upstream_weights("fd-dinov2", tmp_path / "w.pth", LOG, server.table(url=server.base + "/moved"))
    assert installed.path.read_bytes() == PAYLOAD


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """The same server over https, with a self-signed certificate for 127.0.0.1 that urllib is told to trust."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=120,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    served = WeightsServer(tls=context)
    served.thread.start()
    yield served
    served.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_an_https_download_redirected_to_http_is_refused(tmp_path, tls_server, server, machine_cache):
    target = tmp_path / "weights" / "w.pth"
    # The https server itself works (and a redirect within https is followed) ...
    tls_server.redirect_to = tls_server.url
    table = server.table(url=tls_server.base + "/moved")
    assert install_upstream_weights("fd-dinov2", target, LOG, table).path.read_bytes() == PAYLOAD
    target.unlink()

    # ... but not one down to plain http, even to the very same bytes.
    tls_server.redirect_to = server.url
    with pytest.raises(WeightsError, match=rf"redirects to {server.url}, which is not https; refused, installed nothing"):
        install_upstream_weights("fd-dinov2", target, LOG, table)
    assert server.ranges == [] and not target.exists() and not part_file(machine_cache).exists()


def test_across_filesystems_the_verified_file_is_copied_into_place_atomically(tmp_path, server, machine_cache, monkeypatch):
    real_replace = os.replace
    renames: list[tuple[str, str]] = []

    def replace(source, destination):
        if str(source).startswith(str(machine_cache)):  # as if the cache were on another filesystem
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        renames.append((str(source), str(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "weights" / "w.pth"
    installed = install_upstream_weights("fd-dinov2", target, LOG, server.table())
    assert installed.path.read_bytes() == PAYLOAD and not part_file(machine_cache).exists()
    [(temporary, destination)] = renames  # a temporary beside the target, renamed over it
    assert Path(temporary).parent == target.parent and destination == str(target)
    assert list(target.parent.iterdir()) == [target]


@pytest.mark.slow  # the tiny project as `dvc repro` left it (conftest), then the install
def test_installing_is_weights_leaves_the_train_stage_up_to_date(reproduced_project, subprocess_env, server, monkeypatch,
                                                                 machine_cache):
    """The train stage depends on the FID Inception file alone: an IS download, cut short or whole, changes nothing it reads."""
    from conftest import run

    from flows.cli import main as scenegan
    from ganlib.metrics.weight_files import TORCH_FIDELITY_INCEPTION_FILE

    dvc = str(Path(sys.executable).with_name("dvc"))
    root = reproduced_project

    def train_status() -> str:
        return run([dvc, "status", "train"], root, subprocess_env).stdout

    assert "up to date" in train_status()
    weights_dir = root / "weights"
    before = sorted(p.name for p in weights_dir.iterdir())
    entry = server.table()["fd-dinov2"]
    monkeypatch.setattr(weights, "UPSTREAM_WEIGHTS", {"is": UpstreamWeights(
        TORCH_FIDELITY_INCEPTION_FILE, entry.url, entry.sha256, entry.what, entry.max_size)})
    params_file = str(root / "params.yaml")

    server.cut_after = 300_000  # interrupted: its bytes wait in the machine cache, not in weights/
    assert scenegan(["weights", "install", "--metric", "is", "--params", params_file]) != 0
    assert part_file(machine_cache).stat().st_size == 300_000
    assert sorted(p.name for p in weights_dir.iterdir()) == before
    assert "up to date" in train_status()

    server.cut_after = None  # resumed and installed
    assert scenegan(["weights", "install", "--metric", "is", "--params", params_file]) == 0
    assert (weights_dir / TORCH_FIDELITY_INCEPTION_FILE).read_bytes() == PAYLOAD
    assert server.ranges[-1] == "bytes=300000-"
    assert "up to date" in train_status()
