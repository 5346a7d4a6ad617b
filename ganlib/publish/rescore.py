"""Re-score the published generator under this run's evaluate settings, through the evaluate stage's code.

A release keeps the generator.pt it was made from (RELEASE_GENERATOR_FILE,
its sha256 under the manifest's GENERATOR_KEY). When the published FID was
measured under other settings, the better_fid gate reads that file back from
the target, checks its sha256 and scores it with
ganlib.metrics.evaluate.score_generator: the same extractor spec (and speed
choice), the cached reference statistics, the same latents (evaluate.seed),
n_samples and bootstrap, on evaluate.device. Only FID is computed (its band
comes with it), so the other metrics' cost is not paid twice; FID and its band
do not depend on which other metrics are listed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ganlib.config import Params
from ganlib.logs import Logger
from ganlib.models.generator_file import load_generator
from ganlib.publish.fid_settings import fid_settings
from ganlib.publish.gate import NotRescored, PublishError, RescoredFid, band_from_metrics
from ganlib.publish.targets import GalleryTarget, PublishedGallery, sha256_hex

RELEASE_GENERATOR_FILE = "generator.pt"
GENERATOR_KEY = "generator"   # manifest: {"file": RELEASE_GENERATOR_FILE, "sha256": ...}


def generator_record(generator_file: bytes) -> dict[str, Any]:
    """What a release manifest says about the generator it stores."""
    return {"file": RELEASE_GENERATOR_FILE, "sha256": sha256_hex(generator_file)}


def rescore_published(
    target: GalleryTarget, published: PublishedGallery, resolution: int, params: Params, log: Logger, root: Path
) -> RescoredFid | NotRescored:
    """The published release's generator scored under `params.evaluate`, or why it cannot be.

    `resolution` is this run's generator's: a published generator of another
    resolution cannot be scored against this run's prepared data.
    """
    # Imported here: the metrics' extractors (torch-fidelity, torchvision) take seconds to import, and only
    # the better_fid gate re-scores; every other publish run would pay for them for nothing.
    from ganlib.metrics.evaluate import evaluation_device, score_generator

    stored = _stored_generator(target, published)
    if isinstance(stored, NotRescored):
        return stored
    data, sha256 = stored
    with tempfile.TemporaryDirectory(prefix="scenegan-rescore-") as scratch:
        path = Path(scratch) / RELEASE_GENERATOR_FILE
        path.write_bytes(data)
        device = evaluation_device(params.evaluate.device)
        generator, info = load_generator(path, device)
    if info.resolution != resolution:
        return NotRescored(
            f"the published generator makes {info.resolution} px images, this run's {resolution} px, "
            "so it cannot be scored against this run's prepared data"
        )
    log.info(
        "re-scoring the generator of release %s under this run's evaluate settings (%d samples, seed %d)",
        published.release, params.evaluate.n_samples, params.evaluate.seed,
    )
    report = score_generator(generator, info, fid_only(params), log, root, device).to_json()
    band = band_from_metrics(report)
    if band is None:  # score_generator computes FID whenever it is asked for; a None here is a bug upstream
        raise PublishError(f"re-scoring release {published.release} gave no FID")
    return RescoredFid(band=band, settings=fid_settings(report) or {}, generator_sha256=sha256)


def fid_only(params: Params) -> Params:
    """`params` with evaluate.metrics narrowed to FID: the same FID and band, without KID/IS/PRC/FD_DINOv2's cost."""
    return params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"metrics": ["fid"]})})


def _stored_generator(target: GalleryTarget, published: PublishedGallery) -> tuple[bytes, str] | NotRescored:
    """The release's generator file and its sha256 as recorded, checked; or why there is none."""
    record = published.manifest.get(GENERATOR_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return NotRescored(
            f"release {published.release} stores no generator to re-score (published before releases kept one)"
        )
    # The file name is fixed, never read from the manifest: nothing outside the release directory is read.
    data = target.release_file(published.release, RELEASE_GENERATOR_FILE)
    if data is None or sha256_hex(data) != record["sha256"]:
        found = "is missing" if data is None else "does not match the sha256 its manifest recorded"
        raise PublishError(
            f"{target.location}: release {published.release}'s {RELEASE_GENERATOR_FILE} {found} "
            f"({record['sha256'][:12]}), so the gate cannot re-score it. Restore the file, or publish once "
            "with publish.gate: always"
        )
    return data, record["sha256"]
