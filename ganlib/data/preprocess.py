"""The preprocess stage: data/raw (any photos) -> the prepared dataset (see ganlib/data/dataset.py).

Reads every file under the raw directory in sorted order, decodes them in
parallel, and streams the accepted images into one memory-mapped images.npy,
so a dataset far larger than RAM prepares in constant memory. Every file that
is not used is listed in qa_report.json with its reason, and so are groups of
perceptual near-duplicates (ganlib/data/near_duplicates.py), which
`preprocess.near_duplicates: drop` also leaves out. Each image's class, when
the data has classes (ganlib/data/labels.py), goes into labels.npy in the
same order, so a rejected image takes its label with it. The output directory
appears complete or not at all, and identical inputs give byte-identical
outputs (DVC hashes them; downstream stages re-run when they change).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import multiprocessing
import os
import stat
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ganlib.config import STAGE_PARAMS, Params, PreprocessParams, params_fingerprint, write_resolved_params
from ganlib.data import dataset, images, labels
from ganlib.data.near_duplicates import METHOD, NearDuplicateGroups, perceptual_hash
from ganlib.data.raw_check import DVC_CACHE_DIR, refuse_unsafe_entries
from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_json, staged_directory
from ganlib.io.provenance import dataset_md5
from ganlib.logs import Logger
from ganlib.progress import Progress

# Reject reasons decided here (decoding reasons live in ganlib.data.images).
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"
BROKEN_SYMLINK = "broken_symlink"
NOT_A_REGULAR_FILE = "not_a_regular_file"
UNREADABLE = "unreadable"
ALREADY_SCANNED = "already_scanned"

QA_FORMAT = "scenegan-qa/1"
PROGRESS_INTERVAL_S = 5.0


class PreprocessError(UserFacingError, RuntimeError):
    """The raw dataset cannot be prepared; the message names the directory and what to do."""


@dataclass(frozen=True)
class RejectRecord:
    path: str  # relative to the raw directory, POSIX separators
    reason: str
    detail: str


@dataclass(frozen=True)
class RawScan:
    """What a walk of the raw directory found, before any file is decoded."""

    # (relative path, real path to open), sorted by relative path; plain
    # strings because a large dataset has millions of them.
    files: list[tuple[str, str]]
    rejects: list[RejectRecord]
    hidden: int  # dot-files and dot-directories skipped (each counted once, not descended)
    # Files at the top level named in `set_aside` (labels files): name -> real path; not images.
    set_aside: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedSummary:
    out_dir: Path
    count: int
    resolution: int
    scanned: int
    rejected: int
    rejects_by_reason: dict[str, int]
    hidden_skipped: int
    images_sha256: str
    data_md5: str | None
    seconds: float
    near_duplicate_groups: int = 0    # groups of perceptual near-duplicates found
    near_duplicate_copies: int = 0    # images in them beyond the first of each (dropped with `drop`)
    labels_source: str | None = None  # "folders" | "file:<name>" | None (no classes)
    class_counts: dict[str, int] = field(default_factory=dict)  # images per class, in index order
    warnings: tuple[str, ...] = ()    # also in qa_report.json and the log


@dataclass(frozen=True)
class _Examined:
    """A worker's answer for one file: its content hash (when deduplicating), the decode, its pHash."""

    sha256: bytes | None
    decoded: images.Decoded
    phash: int | None = None  # of the decoded image; None when it was rejected


def prepare_dataset(params: Params, log: Logger, root: Path) -> PreparedSummary:
    """Decode `base.paths.raw` into `base.paths.prepared` (both relative to `root`)."""
    cfg = params.preprocess
    raw_name, out_name = params.base.paths.raw, params.base.paths.prepared
    raw_dir, out_dir = root / raw_name, root / out_name
    started = time.monotonic()

    log.info("preprocess: scanning %s", raw_name)
    # Before any file is opened: symlinks, FIFOs and devices are refused with the listing
    # `scenegan data check` prints (a missing folder is the scan's error to report).
    refuse_unsafe_entries(raw_dir, raw_name, allowed_link_targets=[root / DVC_CACHE_DIR])
    scan = scan_raw_directory(
        raw_dir, raw_name, link_targets_allowed=[root / DVC_CACHE_DIR], set_aside=labels.LABEL_FILES
    )
    labelling = labels.read_labelling(cfg.labels, scan.files, scan.set_aside, raw_name, log)
    scan = _without_unlabelled(scan, labelling)
    workers = _worker_count(cfg, len(scan.files))
    log.info(
        "preprocess: %d files to decode (%d rejected while scanning, %d hidden skipped); "
        "%d px, %d worker(s)",
        len(scan.files), len(scan.rejects), scan.hidden, cfg.resolution, workers,
    )
    if not scan.files:
        raise _nothing_usable(raw_name, scan.rejects)

    with staged_directory(out_dir) as staging:
        count, rejects, near, kept_labels = _decode_into(
            staging / dataset.IMAGES_FILE, scan, labelling, raw_name, cfg, workers, log
        )
        record = labels.record_classes(labelling, kept_labels, raw_name) if labelling.labelled else None
        warnings = [*(record.warnings if record else ()), *_two_class_warnings(rejects, raw_name)]
        manifest = _write_records(staging, params, root, scan, count, rejects, near, labelling, record, warnings)

    seconds = time.monotonic() - started
    log.info(
        "preprocess: wrote %d images (%d px) to %s; rejected %d of %d (%s); %.1f s, %.1f files/s",
        count, cfg.resolution, out_name, manifest["rejected"], manifest["scanned"],
        _reason_counts_text(manifest["rejects_by_reason"]), seconds, len(scan.files) / max(seconds, 1e-9),
    )
    if near.groups:
        log.info(
            "preprocess: %d group(s) of near-duplicates, %d image(s) beyond the first of each (%s; see %s/%s)",
            len(near.groups), near.copies,
            "left out" if cfg.near_duplicates == "drop" else "kept: set preprocess.near_duplicates: drop to leave them out",
            out_name, dataset.QA_REPORT_FILE,
        )
    if record is not None:
        log.info("preprocess: %d classes from %s: %s", len(record.classes), labelling.source,
                 ", ".join(f"{name} {n}" for name, n in record.counts.items()))
    for warning in warnings:
        log.warning("preprocess: %s", warning)
    return PreparedSummary(
        out_dir=out_dir, count=count, resolution=cfg.resolution, scanned=manifest["scanned"],
        rejected=manifest["rejected"], rejects_by_reason=manifest["rejects_by_reason"], hidden_skipped=scan.hidden,
        images_sha256=manifest["images_sha256"], data_md5=manifest["data_md5"], seconds=seconds,
        near_duplicate_groups=len(near.groups), near_duplicate_copies=near.copies,
        labels_source=manifest["labels_source"], class_counts=dict(record.counts) if record else {},
        warnings=tuple(warnings),
    )


def _without_unlabelled(scan: RawScan, labelling: labels.Labelling) -> RawScan:
    """The scan less the files the labels leave out (never decoded: they could not be used), as rejects."""
    if not labelling.unlabelled:
        return scan
    left_out = {rel for rel, _ in labelling.unlabelled}
    return replace(
        scan,
        files=[item for item in scan.files if item[0] not in left_out],
        rejects=scan.rejects + [RejectRecord(rel, labels.NO_LABEL, detail) for rel, detail in labelling.unlabelled],
    )


def _decode_into(
    images_path: Path, scan: RawScan, labelling: labels.Labelling, raw_name: str, cfg: PreprocessParams,
    workers: int, log: Logger,
) -> tuple[int, list[RejectRecord], NearDuplicateGroups, np.ndarray]:
    """Decode every scanned file into images.npy, in order.

    Returns the count, all rejects, the near-duplicates and the class index of every kept
    image (int32, in images.npy's order; empty when the data has no classes).
    """
    writer = _ImageArrayWriter(images_path, len(scan.files), cfg.resolution)
    kept_labels = np.zeros(len(scan.files) if labelling.labelled else 0, dtype=np.int32)
    rejects = list(scan.rejects)
    kept_by_hash: dict[bytes, str] = {}
    near = NearDuplicateGroups(cfg.near_duplicate_distance)
    # Log lines, never a terminal bar: this runs inside a Prefect task, whose run log should show it.
    progress = Progress(log, len(scan.files), "preprocess", "files", interval_s=PROGRESS_INTERVAL_S, bar=False)
    with progress, closing(_examine_in_order(scan.files, raw_name, cfg, workers)) as examined:
        for (rel, _), result in zip(scan.files, examined, strict=True):
            progress.advance()
            reject = _reject_for(rel, result, kept_by_hash, raw_name, labelling)
            if reject is None:
                reject = _near_duplicate_reject(rel, result, near, cfg, raw_name)
            if reject is not None:
                rejects.append(reject)
                continue
            if labelling.labelled:
                kept_labels[writer.count] = labelling.of_file[rel]
            writer.append(result.decoded.image)
    if writer.count == 0:
        raise _nothing_usable(raw_name, rejects)  # the caller's staging directory goes with it
    writer.finish()
    rejects.sort(key=lambda r: (r.path, r.reason))
    return writer.count, rejects, near, kept_labels[: writer.count]  # empty stays empty


def _near_duplicate_reject(
    rel: str, result: _Examined, near: NearDuplicateGroups, cfg: PreprocessParams, raw_name: str
) -> RejectRecord | None:
    """Record `rel` in its near-duplicate group; a reject only under `drop` (the first of a group is kept)."""
    match = near.check(rel, result.phash)
    if match is None or cfg.near_duplicates != "drop":
        return None
    first, distance = match
    return RejectRecord(
        rel, NEAR_DUPLICATE, f"{raw_name}/{rel}: looks like {raw_name}/{first} (kept; pHash distance {distance})"
    )


def _write_records(
    staging: Path, params: Params, root: Path, scan: RawScan, count: int, rejects: list[RejectRecord],
    near: NearDuplicateGroups, labelling: labels.Labelling, record: labels.ClassRecord | None, warnings: list[str],
) -> dict[str, Any]:
    """labels.npy (with classes), manifest.json, qa_report.json and params.json beside images.npy; returns the manifest."""
    by_reason = dict(sorted(Counter(r.reason for r in rejects).items()))
    raw_name = params.base.paths.raw
    labels_sha256 = labels.write_labels(staging / dataset.LABELS_FILE, record.labels) if record else None
    class_counts = dict(record.counts) if record else {}
    manifest = {
        "format": dataset.FORMAT,
        "count": count,
        "resolution": params.preprocess.resolution,
        # The record of base.paths.raw itself; None (untracked) rather than another folder's md5.
        "data_md5": dataset_md5(root, raw_name),
        "images_sha256": _file_digest(staging / dataset.IMAGES_FILE).hex(),
        "source": raw_name,
        "scanned": count + len(rejects),
        "accepted": count,
        "rejected": len(rejects),
        "rejects_by_reason": by_reason,
        "hidden_skipped": scan.hidden,
        # workers changes how fast, not what: leave it out so outputs match across machines.
        "preprocess_params": params_fingerprint(params, "preprocess", exclude=["preprocess.workers"]),
        # The contract training and evaluation read (ganlib/data/dataset.py): names in index order.
        "classes": list(record.classes) if record else [],
        "class_counts": class_counts,
        "labels_sha256": labels_sha256,
        "labels_source": labelling.source if record else None,
    }
    atomic_write_json(staging / dataset.MANIFEST_FILE, manifest)
    atomic_write_json(staging / dataset.QA_REPORT_FILE, {
        "format": QA_FORMAT,
        "source": raw_name,
        "scanned": manifest["scanned"],
        "rejected": len(rejects),
        "rejects_by_reason": by_reason,
        "rejects": [{"path": r.path, "reason": r.reason, "detail": r.detail} for r in rejects],
        "near_duplicates": {
            "method": METHOD,
            "max_distance": params.preprocess.near_duplicate_distance,
            "action": params.preprocess.near_duplicates,
            "groups": len(near.groups),
            "copies": near.copies,
            # Each group: the first image (by path) and the later ones that look like it.
            "listing": near.report(),
        },
        "labels": {
            "source": manifest["labels_source"],
            "classes": manifest["classes"],
            "class_counts": class_counts,
            "min_class_images": labels.MIN_CLASS_IMAGES,
            "max_imbalance": labels.MAX_IMBALANCE,
        },
        "warnings": warnings,
    })
    # Only what the stage depends on: the prepared directory is a DVC dependency
    # of training, and neither the worker count nor an unrelated base key
    # (device, other stages' paths) may make it look changed.
    write_resolved_params(params, staging, STAGE_PARAMS["preprocess"])
    return manifest


def scan_raw_directory(
    raw_dir: Path, display_name: str | None = None, link_targets_allowed: Sequence[Path] = (),
    set_aside: Sequence[str] = (),
) -> RawScan:
    """Walk `raw_dir` (sorted, depth-first) and classify every entry without decoding it.

    Regular files at the top level named in `set_aside` (the labels files) are returned
    apart, in `RawScan.set_aside`: they describe the images and are not images themselves.

    Symlinks are followed only while they stay inside `raw_dir` (or inside
    one of `link_targets_allowed`); a directory reached a second time (a
    symlink loop, or an alias of one already walked) is reported once and
    not walked again, so a walk always terminates.
    """
    display_name = display_name or str(raw_dir)
    if not raw_dir.is_dir():
        raise PreprocessError(
            f"{display_name}: raw dataset directory not found; fetch it with `dvc pull`, "
            "import photos with `scenegan data import SRC`, or set base.paths.raw"
        )
    root_real = os.path.realpath(raw_dir)
    inside = (root_real, *(os.path.realpath(path) for path in link_targets_allowed))
    files: list[tuple[str, str]] = []
    rejects: list[RejectRecord] = []
    aside: dict[str, str] = {}
    hidden = 0
    first_walked_as: dict[str, str] = {}  # real directory path -> relative path it was walked as
    stack: list[tuple[str, str]] = [(root_real, "")]
    while stack:
        directory, rel_dir = stack.pop()
        if directory in first_walked_as:
            first = first_walked_as[directory] or "."
            rejects.append(RejectRecord(rel_dir, ALREADY_SCANNED, f"{display_name}/{rel_dir}: same directory as {first!r}, walked once"))
            continue
        first_walked_as[directory] = rel_dir
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            rejects.append(RejectRecord(rel_dir or ".", UNREADABLE, f"{display_name}/{rel_dir}: cannot list directory ({exc.strerror})"))
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.name.startswith("."):
                hidden += 1
                continue
            kind, target, detail = _classify_entry(entry, inside, f"{display_name}/{rel}")
            if kind == "dir":
                subdirs.append((target, rel))
            elif kind == "file" and not rel_dir and entry.name in set_aside:
                aside[entry.name] = target
            elif kind == "file":
                files.append((rel, target))
            else:
                rejects.append(RejectRecord(rel, kind, detail))
        stack.extend(reversed(subdirs))  # pop order = sorted order
    files.sort(key=lambda item: item[0])
    return RawScan(files=files, rejects=rejects, hidden=hidden, set_aside=aside)


def _classify_entry(entry: os.DirEntry, inside: tuple[str, ...], shown: str) -> tuple[str, str, str]:
    """("dir" | "file" | a reject reason, the real path, a detail for rejects)."""
    if not entry.is_symlink():
        # Answered from the directory listing itself: no extra system call per file.
        if entry.is_dir(follow_symlinks=False):
            return "dir", entry.path, ""
        if entry.is_file(follow_symlinks=False):
            return "file", entry.path, ""
        mode = entry.stat(follow_symlinks=False).st_mode
        return NOT_A_REGULAR_FILE, entry.path, f"{shown}: not a regular file (mode {stat.filemode(mode)})"

    target = os.path.realpath(entry.path)
    if not any(os.path.commonpath([allowed, target]) == allowed for allowed in inside):
        return SYMLINK_OUTSIDE_ROOT, target, f"{shown}: symlink to {os.readlink(entry.path)} leaves the dataset root"
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        return BROKEN_SYMLINK, target, f"{shown}: symlink target cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "dir", target, ""
    if stat.S_ISREG(mode):
        return "file", target, ""
    # FIFOs and devices would block or stream forever if opened.
    return NOT_A_REGULAR_FILE, target, f"{shown}: symlink to something that is not a regular file (mode {stat.filemode(mode)})"


def _reject_for(
    rel: str, result: _Examined, kept_by_hash: dict[bytes, str], raw_name: str, labelling: labels.Labelling
) -> RejectRecord | None:
    # Results arrive in sorted path order, so the first of identical files is the one kept.
    if result.sha256 is not None:
        kept = kept_by_hash.setdefault(result.sha256, rel)
        if kept != rel and labelling.labelled and labelling.of_file[kept] != labelling.of_file[rel]:
            mine, theirs = (labelling.classes[labelling.of_file[name]] for name in (rel, kept))
            return RejectRecord(
                rel, labels.IN_TWO_CLASSES,
                f"{raw_name}/{rel} (class {mine}): byte-identical to {raw_name}/{kept} (class {theirs}, kept); "
                f"one image cannot be in two classes: delete the copy from the wrong class",
            )
        if kept != rel:
            return RejectRecord(rel, DUPLICATE, f"{raw_name}/{rel}: byte-identical to {raw_name}/{kept} (kept)")
    if result.decoded.reject is not None:
        return RejectRecord(rel, result.decoded.reject.reason, result.decoded.reject.detail)
    return None


# --------------------------------------------------------------------------- decoding in workers


def _examine_in_order(
    files: Sequence[tuple[str, str]], raw_name: str, cfg: PreprocessParams, workers: int
) -> Iterator[_Examined]:
    """Examine every file, yielding results in the order of `files`.

    At most a few chunks per worker are in flight, so memory stays bounded
    however large the dataset; a crashed worker (a decoder segfault, the OOM
    killer) is an error naming the files it held, never a hang.
    """
    size = _chunk_size(len(files), workers)
    chunks = (
        [(f"{raw_name}/{rel}", path) for rel, path in files[start : start + size]]
        for start in range(0, len(files), size)
    )
    if workers == 1 and images.pillow_allows_pixels(cfg.max_pixels):
        for chunk in chunks:
            yield from _examine_chunk(chunk, cfg)
        return

    # spawn, not fork: the caller (a Prefect worker) runs threads, and forking
    # a process that holds another thread's lock can deadlock the child.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=images.lift_pillow_pixel_limit,
    )
    try:
        remaining = chunks
        in_flight: deque[tuple[list[tuple[str, str]], Future]] = deque()
        for chunk in itertools.islice(remaining, workers * 4):
            in_flight.append((chunk, pool.submit(_examine_chunk, chunk, cfg)))
        while in_flight:
            chunk, future = in_flight.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                names = ", ".join(shown for shown, _ in chunk)
                raise PreprocessError(
                    f"a decoder worker process died while decoding one of: {names}. Either a decoder "
                    "crashed or ran out of memory (remove that file, or lower preprocess.workers), or the "
                    "workers could not start: they re-import the calling script, which must be a file "
                    "with an `if __name__ == \"__main__\":` guard"
                ) from None
            for next_chunk in itertools.islice(remaining, 1):
                in_flight.append((next_chunk, pool.submit(_examine_chunk, next_chunk, cfg)))
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _examine_chunk(chunk: list[tuple[str, str]], cfg: PreprocessParams) -> list[_Examined]:
    return [_examine_file(shown, Path(path), cfg) for shown, path in chunk]


def _examine_file(shown: str, path: Path, cfg: PreprocessParams) -> _Examined:
    try:
        digest = _file_digest(path) if cfg.dedupe else None
    except OSError as exc:
        reject = images.Reject(UNREADABLE, f"{shown}: cannot read ({exc.strerror})")
        return _Examined(None, images.Decoded(image=None, reject=reject, source_size=None))
    decoded = images.decode_image(path, cfg, name=shown)
    # Hashed here, in the worker: in parallel, on the image exactly as it will be stored.
    phash = perceptual_hash(decoded.image) if decoded.image is not None else None
    return _Examined(digest, decoded, phash)


def _worker_count(cfg: PreprocessParams, n_files: int) -> int:
    wanted = cfg.workers or os.cpu_count() or 1
    return max(1, min(wanted, n_files))


def _chunk_size(n_jobs: int, workers: int) -> int:
    # Big enough to amortise inter-process overhead on tiny PNGs, small enough
    # that the workers stay busy to the end on a few large photos.
    return max(1, min(32, n_jobs // (workers * 16)))


# --------------------------------------------------------------------------- output


class _ImageArrayWriter:
    """images.npy filled in order as images arrive; the final count is known only at the end.

    The file is created for every candidate (sparse: unwritten tail costs no
    disk), then its header is rewritten with the real count and the tail cut
    off. The header is padded to a fixed 64-byte multiple, so its length does
    not depend on the count and the data never moves.
    """

    def __init__(self, path: Path, capacity: int, resolution: int) -> None:
        self.path = path
        self.count = 0
        self._frame = (resolution, resolution, 3)
        self._array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(capacity, *self._frame))
        self._data_offset = int(self._array.offset)

    def append(self, image: np.ndarray) -> None:
        self._array[self.count] = image
        self.count += 1

    def finish(self) -> None:
        self._array.flush()
        del self._array  # unmaps the file
        header = _npy_header((self.count, *self._frame))
        if len(header) != self._data_offset:
            raise AssertionError(f"npy header length changed ({len(header)} != {self._data_offset})")
        with open(self.path, "r+b") as handle:
            handle.write(header)
            handle.truncate(self._data_offset + self.count * int(np.prod(self._frame)))
            handle.flush()
            os.fsync(handle.fileno())


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _file_digest(path: Path) -> bytes:
    """sha256 of a file's bytes, read in blocks (files can be larger than RAM)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


# --------------------------------------------------------------------------- reporting


def _two_class_warnings(rejects: list[RejectRecord], raw_name: str) -> list[str]:
    twins = [r.path for r in rejects if r.reason == labels.IN_TWO_CLASSES]
    if not twins:
        return []
    return [f"{len(twins)} image(s) of {raw_name} are byte-identical to an image of another class; the first by "
            f"path was kept and the copies left out (reason {labels.IN_TWO_CLASSES} in qa_report.json names both "
            f"classes): {', '.join(twins[:labels.EXAMPLES_SHOWN])}{', ...' if len(twins) > labels.EXAMPLES_SHOWN else ''}"]


def _nothing_usable(raw_name: str, rejects: list[RejectRecord]) -> PreprocessError:
    if not rejects:
        return PreprocessError(f"{raw_name}: no files found (hidden dot-files are skipped); add images or run `dvc pull`")
    counts = dict(sorted(Counter(r.reason for r in rejects).items()))
    examples = "; ".join(r.detail for r in sorted(rejects, key=lambda r: r.path)[:3])
    return PreprocessError(
        f"{raw_name}: no usable images among {len(rejects)} files ({_reason_counts_text(counts)}). "
        f"For example: {examples}. Nothing was written. Replace the files, or relax "
        "preprocess.min_side / max_aspect_ratio / max_pixels if the rejects are wrong"
    )


def _reason_counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"
