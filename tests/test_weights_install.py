"""`install --metric`: published weights fetched on demand, verified, installed atomically; a local server stands in.

Nothing here reaches the internet: every download comes from an http.server
on 127.0.0.1, through an injected URL table with the checksum of the file it
serves.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    """Serves PAYLOAD at /w.pth; records each request's Range header; can honour Range or not, or cut the body short."""

    def __init__(self) -> None:
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None  # send a full Content-Length, then only this many bytes
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if self.path != "/w.pth":
                    self.send_error(404)
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
                self.wfile.write(body if server.cut_after is None else body[: server.cut_after])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def table(self, sha256: str = SHA256) -> dict[str, UpstreamWeights]:
        return {"fd-dinov2": UpstreamWeights("w.pth", self.url, sha256, "test weights")}


@pytest.fixture
def server():
    served = WeightsServer()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


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


def test_an_interrupted_download_is_resumed_with_a_range_request(tmp_path, server):
    target = tmp_path / "w" / "w.pth"
    server.cut_after = 300_000
    with pytest.raises(WeightsError, match=r"interrupted after 300,000 bytes.*run the same command again to resume"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table(), timeout=5)
    part = target.with_name("w.pth.part")
    assert part.stat().st_size == 300_000 and not target.exists()

    server.cut_after = None
    installed = install_upstream_weights("fd-dinov2", target, LOG, server.table())
    assert server.ranges == [None, "bytes=300000-"]
    assert installed.action == "resumed" and installed.sha256 == SHA256
    assert target.read_bytes() == PAYLOAD and not part.exists()


def test_a_part_file_is_continued_and_a_server_without_range_restarts(tmp_path, server):
    target = tmp_path / "w.pth"
    target.with_name("w.pth.part").write_bytes(PAYLOAD[:1000])
    assert install_upstream_weights("fd-dinov2", target, LOG, server.table()).action == "resumed"
    assert server.ranges == ["bytes=1000-"] and target.read_bytes() == PAYLOAD

    target.unlink()
    target.with_name("w.pth.part").write_bytes(b"x" * 1000)  # wrong bytes: appending to them could never verify
    server.honour_range = False
    installed = install_upstream_weights("fd-dinov2", target, LOG, server.table())
    assert installed.action == "downloaded" and target.read_bytes() == PAYLOAD


def test_a_checksum_mismatch_installs_nothing_and_deletes_the_part_file(tmp_path, server, capsys):
    target = tmp_path / "w" / "w.pth"
    with pytest.raises(WeightsError, match=f"has sha256 {SHA256}, expected {'0' * 64}; deleted it, installed nothing"):
        install_upstream_weights("fd-dinov2", target, LOG, server.table("0" * 64))
    assert list(target.parent.iterdir()) == []

    assert weights.main(["install", "--metric", "fd-dinov2", str(target.parent)], urls=server.table("0" * 64)) == 1
    assert "installed nothing" in capsys.readouterr().err and list(target.parent.iterdir()) == []


def test_offline_fails_at_once_saying_where_to_put_the_file(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/w.pth"
    table = {"clip": UpstreamWeights("clip.pt", url, SHA256, "test weights")}
    started = time.monotonic()
    with pytest.raises(WeightsError) as err:
        install_upstream_weights("clip", tmp_path / "clip.pt", LOG, table)
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert f"could not reach {url}" in message and "installed nothing" in message.lower()
    assert str(tmp_path / "clip.pt") in message and SHA256 in message
    assert list(tmp_path.iterdir()) == []

    assert weights.main(["install", "--metric", "clip", str(tmp_path)], urls=table) == 1
    assert f"could not reach {url}" in capsys.readouterr().err


def test_http_errors_are_reported_with_the_manual_route(tmp_path, server):
    table = {"is": UpstreamWeights("w.pth", server.url + "-missing", SHA256, "test weights")}
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
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0


def test_scenegan_weights_install_reports_for_people_and_json(tmp_path, server, monkeypatch, capsys):
    from flows.cli import main as scenegan

    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params_file)
    monkeypatch.setattr(weights, "UPSTREAM_WEIGHTS", server.table())
    assert scenegan(["weights", "install", "--metric", "fd_dinov2", "--params", str(params_file)]) == 0
    printed = capsys.readouterr().out
    assert "fd-dinov2: downloaded w.pth" in printed and "Next: add fd_dinov2 to evaluate.metrics" in printed

    monkeypatch.setattr(weights, "UPSTREAM_WEIGHTS",
                        {"fd-dinov2": UpstreamWeights("x.pth", f"http://127.0.0.1:{closed_port()}/x.pth", SHA256, "t")})
    assert scenegan(["weights", "install", "--metric", "fd-dinov2", "--params", str(params_file), "--json"]) == 2
    captured = capsys.readouterr()
    import json

    document = json.loads(captured.out)
    assert document["ok"] is False and "put it at" in document["error"] and SHA256 in document["error"]


def test_the_cli_offers_exactly_the_metrics_with_published_weights():
    from flows.cli import WEIGHTS_METRICS

    assert sorted(WEIGHTS_METRICS) == sorted(UPSTREAM_WEIGHTS)
