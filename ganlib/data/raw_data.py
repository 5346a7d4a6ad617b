"""Making sure the raw dataset (data/raw, tracked by data.dvc) is present.

On a fresh clone the images are not in git: they come from the DVC remote
when one is configured, and otherwise the embedded default dataset is
generated. The generator is deterministic, so for the committed params the
generated directory has exactly the md5 recorded in data.dvc and DVC sees
no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ganlib.config import Params
from ganlib.data.scenes import write_default_dataset
from ganlib.io.dvc_cli import has_default_remote, run_dvc
from ganlib.io.provenance import DATA_DVC_FILE, dataset_dvc_file, dataset_md5
from ganlib.logs import Logger


@dataclass(frozen=True)
class RawDataStatus:
    path: Path
    origin: str  # "present" | "pulled" | "generated"
    md5_before: str | None
    md5_after: str | None

    @property
    def data_dvc_changed(self) -> bool:
        return self.md5_before != self.md5_after


def ensure_raw_data(params: Params, root: Path, log: Logger) -> RawDataStatus:
    """Leave a user's data alone; otherwise pull it, otherwise generate the default dataset."""
    raw = root / params.base.paths.raw
    # The record of base.paths.raw itself: data.dvc only while it tracks that folder.
    dvc_file = dataset_dvc_file(root, params.base.paths.raw)
    md5_before = dataset_md5(root, params.base.paths.raw)

    if _has_files(raw):
        log.info("%s is present; leaving it as it is", raw)
        return RawDataStatus(raw, "present", md5_before, md5_before)

    if dvc_file is not None and has_default_remote(root):
        log.info("pulling %s from the DVC remote", raw)
        run_dvc(["pull", str(dvc_file.relative_to(root))], root)
        return RawDataStatus(raw, "pulled", md5_before, dataset_md5(root, params.base.paths.raw))

    log.info("no data in %s and no DVC remote: generating the embedded default dataset", raw)
    write_default_dataset(raw, params.data.n_images, params.data.size, params.data.seed, log)
    # `dvc add` records the version (and caches it) so that `dvc repro` and
    # `dvc status` agree; for the committed params the md5 does not change.
    # The stub keeps DVC writing to data.dvc rather than a new data/raw.dvc.
    if not (root / DATA_DVC_FILE).exists():
        (root / DATA_DVC_FILE).write_text(f"outs:\n- path: {params.base.paths.raw}\n")
    run_dvc(["add", params.base.paths.raw], root)
    status = RawDataStatus(raw, "generated", md5_before, dataset_md5(root, params.base.paths.raw))
    if status.data_dvc_changed and md5_before:
        log.warning(
            "%s now records %s (was %s): your data params differ from the committed ones; "
            "commit data.dvc to keep this dataset version",
            DATA_DVC_FILE, status.md5_after, md5_before,
        )
    return status


def _has_files(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() for p in directory.rglob("*"))
