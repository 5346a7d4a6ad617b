"""Class labels of the raw images: which class each image shows, decided before anything is decoded.

`preprocess.labels` chooses where classes come from:

    folders  the first folder level under base.paths.raw: `forest/a.jpg` is class `forest`
    file     labels.csv (columns `file,class`) or dataset.json (StyleGAN's format:
             {"labels": [["forest/a.jpg", 3], ...]}, with an optional "classes" list of names)
             at the raw folder's top level; paths are relative to the raw folder, with `/`
    none     no classes
    auto     a labels file if there is one; else folders, when every image sits in a
             first-level folder and there are at least two; else none

Decisions:
- Class indices are positions in a sorted list of names (folders, labels.csv), so the same
  data gives the same indices everywhere. dataset.json already numbers its classes, and a
  StyleGAN user expects label 3 to stay before label 10, so there the file's order is kept.
- A class name must match CLASS_NAME_PATTERN: it becomes part of file names, of `--class NAME`
  on the command line and of DVC metric names. Two names that differ only in case are refused
  as well, since they would be one file on macOS and Windows.
- An image listed twice with different classes is an error naming both places. An image the
  labels file does not list is left out (reject reason NO_LABEL, counted in qa_report.json),
  not an error: a file that labels most of a folder is still useful. Only when nothing at all
  is labelled is it an error, since then the paths in the file are wrong. A row naming an
  image that is not there is a warning with a count.
- Byte-identical images in two classes (preprocess finds them while decoding) keep the first
  by path; the later one is rejected with IN_TWO_CLASSES, naming both classes.
- Classes left without any image after decoding (every file rejected) are dropped and the
  indices closed up, with a warning: a class the model can never see would only confuse it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from ganlib.data.images import IMAGE_SUFFIXES
from ganlib.errors import UserFacingError
from ganlib.logs import Logger

LABELS_CSV = "labels.csv"
DATASET_JSON = "dataset.json"
LABEL_FILES = (LABELS_CSV, DATASET_JSON)
MODES = ("auto", "folders", "file", "none")
FOLDERS_SOURCE = "folders"

CLASS_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CLASS_NAME_RULE = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"

# Below this many images a class gets a warning: per-class FID needs thousands, and a GAN
# learns a class from a few dozen images poorly. A constant, not a parameter: it only warns.
MIN_CLASS_IMAGES = 50
MAX_IMBALANCE = 10.0  # largest / smallest class above this: a warning

# Reject reasons decided here and in preprocess (beside ganlib.data.images's).
NO_LABEL = "no_label"
IN_TWO_CLASSES = "in_two_classes"

EXAMPLES_SHOWN = 5


class LabelError(UserFacingError, ValueError):
    """The labels cannot be read or are inconsistent; the message names the file or folder and the fix."""


@dataclass(frozen=True)
class Labelling:
    """Every scanned file's class, as read from the folders or the labels file (nothing decoded yet)."""

    classes: tuple[str, ...] = ()              # names in index order; empty: the data has no labels
    source: str | None = None                  # "folders" | "file:<name>" | None
    of_file: dict[str, int] = field(default_factory=dict)   # relative path -> class index
    unlabelled: tuple[tuple[str, str], ...] = ()  # (relative path, detail): files left out, NO_LABEL
    notes: tuple[str, ...] = ()                # warnings found while reading (rows naming no file)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


@dataclass(frozen=True)
class ClassRecord:
    """The labels of the kept images, after decoding: what the prepared dataset stores."""

    classes: tuple[str, ...]
    labels: np.ndarray          # int32 [N], aligned with images.npy
    counts: dict[str, int]      # images per class
    warnings: tuple[str, ...]


def check_class_name(name: str, where: str) -> str:
    """`name` if it is a safe class name, else a LabelError naming `where` it came from."""
    if not CLASS_NAME_PATTERN.fullmatch(name):
        raise LabelError(
            f"{where}: class name {name!r} is not allowed: class names become file names, `--class NAME` "
            f"arguments and metric names, so they must be {CLASS_NAME_RULE}. Rename it"
        )
    return name


def read_labelling(
    mode: str, files: Sequence[tuple[str, str]], label_files: dict[str, str], raw_name: str, log: Logger
) -> Labelling:
    """The class of every scanned file under `mode` (see the module docstring).

    `files` are the scan's (relative path, real path) pairs; `label_files` the labels
    files found at the raw folder's top level (name -> real path), which are not images.
    """
    if mode not in MODES:
        raise LabelError(f"preprocess.labels: {mode!r} is not one of {', '.join(MODES)}")
    present = [name for name in LABEL_FILES if name in label_files]
    if mode in ("none", "folders"):
        for name in present:
            log.info("preprocess: %s/%s is not read (preprocess.labels: %s)", raw_name, name, mode)
        return Labelling() if mode == "none" else _from_folders(files, raw_name)
    # auto or file: a labels file wins
    if len(present) > 1:
        raise LabelError(
            f"{raw_name}: both {' and '.join(present)} are there; keep the one that labels the images "
            f"(preprocess.labels: {mode} reads exactly one labels file)"
        )
    if present:
        return _from_file(present[0], Path(label_files[present[0]]), files, raw_name, mode, log)
    if mode == "file":
        raise LabelError(
            f"{raw_name}: preprocess.labels is `file` but there is no {LABELS_CSV} or {DATASET_JSON} at its top "
            f"level; add one, or set preprocess.labels to folders, auto or none"
        )
    problem = _folder_layout_problem(files, raw_name)
    if problem:
        log.info("preprocess: no classes (preprocess.labels: auto, no labels file, and %s)", problem)
        return Labelling()
    return _from_folders(files, raw_name)


def record_classes(labelling: Labelling, kept: np.ndarray, raw_name: str) -> ClassRecord:
    """The class record of the kept images (`kept`: their class indices, in images.npy order)."""
    counts = np.bincount(kept, minlength=len(labelling.classes))
    warnings = list(labelling.notes)
    empty = [name for name, n in zip(labelling.classes, counts) if n == 0]
    if empty:
        warnings.append(
            f"{len(empty)} class(es) have no usable image and were left out: {_examples(empty)} "
            f"(see the rejects in qa_report.json)"
        )
        present = counts > 0
        new_index = np.cumsum(present) - 1
        kept = new_index[kept]
        counts = counts[present]
    classes = tuple(name for name in labelling.classes if name not in set(empty))
    by_class = {name: int(n) for name, n in zip(classes, counts)}
    warnings += balance_warnings(by_class, raw_name)
    return ClassRecord(classes, kept.astype(np.int32), by_class, tuple(warnings))


def balance_warnings(counts: dict[str, int], raw_name: str) -> list[str]:
    """Warnings for classes too small to learn (or to score) and for strong imbalance."""
    warnings = []
    small = {name: n for name, n in counts.items() if n < MIN_CLASS_IMAGES}
    if small:
        shown = ", ".join(f"{name} ({n})" for name, n in list(small.items())[:EXAMPLES_SHOWN])
        more = f" and {len(small) - EXAMPLES_SHOWN} more" if len(small) > EXAMPLES_SHOWN else ""
        warnings.append(
            f"{len(small)} class(es) of {raw_name} have fewer than {MIN_CLASS_IMAGES} images: {shown}{more}; "
            "a GAN learns such a class poorly and its per-class FID means little. Add images to it"
        )
    if len(counts) == 1:
        warnings.append(f"{raw_name} has one class only ({next(iter(counts))}): a class-conditional model "
                        "gains nothing from it; add class folders, or set preprocess.labels: none")
    if len(counts) > 1:
        largest = max(counts, key=lambda name: counts[name])
        smallest = min(counts, key=lambda name: counts[name])
        ratio = counts[largest] / counts[smallest]
        if ratio > MAX_IMBALANCE:
            warnings.append(
                f"classes of {raw_name} are imbalanced: {largest} has {counts[largest]} images, {smallest} "
                f"{counts[smallest]} ({ratio:.0f}x, more than {MAX_IMBALANCE:g}x); the small classes are "
                "learned poorly. Add images to them, or train with class-balanced sampling"
            )
    return warnings


def write_labels(path: Path, labels: np.ndarray) -> str:
    """labels.npy (int32 [N], memory-mappable); returns the sha256 of its bytes."""
    np.save(path, np.ascontiguousarray(labels, dtype=np.int32), allow_pickle=False)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- folders


def _folder_layout_problem(files: Sequence[tuple[str, str]], raw_name: str) -> str | None:
    """Why auto does not take classes from folders (None: it does)."""
    flat = [rel for rel, _ in files if "/" not in rel and _looks_like_image(rel)]
    if flat:
        return f"{len(flat)} image(s) lie directly in {raw_name} ({_examples(flat)}), not in class folders"
    folders = {rel.partition("/")[0] for rel, _ in files if "/" in rel}
    if len(folders) < 2:
        return f"the images are in {len(folders)} first-level folder(s), fewer than 2 classes"
    return None


def _from_folders(files: Sequence[tuple[str, str]], raw_name: str) -> Labelling:
    flat = [rel for rel, _ in files if "/" not in rel]
    flat_images = [rel for rel in flat if _looks_like_image(rel)]
    if flat_images:
        raise LabelError(
            f"{raw_name}: {len(flat_images)} image(s) lie directly in the raw folder, outside any class folder: "
            f"{_examples([f'{raw_name}/{rel}' for rel in flat_images])}. With preprocess.labels: folders the "
            f"class of an image is its first folder under {raw_name}: move each into a class folder "
            f"({raw_name}/<class>/<file>), or set preprocess.labels: none"
        )
    folders = sorted({rel.partition("/")[0] for rel, _ in files if "/" in rel})
    if not folders:
        raise LabelError(f"{raw_name}: preprocess.labels is `folders` but there are no class folders in it; "
                         "put the images into one folder per class, or set preprocess.labels: none")
    for name in folders:
        check_class_name(name, f"{raw_name}/{name}/ (a class folder)")
    _refuse_case_twins(folders, f"{raw_name} (class folders)")
    index = {name: i for i, name in enumerate(folders)}
    # Files beside the class folders that are not images by name (README.txt): no class, left out.
    unlabelled = tuple(
        (rel, f"{raw_name}/{rel}: not in a class folder (preprocess.labels: folders), left out") for rel in flat
    )
    return Labelling(
        classes=tuple(folders),
        source=FOLDERS_SOURCE,
        of_file={rel: index[rel.partition("/")[0]] for rel, _ in files if "/" in rel},
        unlabelled=unlabelled,
    )


# --------------------------------------------------------------------------- labels files


@dataclass(frozen=True)
class _Entry:
    rel: str
    cls: Any      # a class name (labels.csv) or an integer label (dataset.json)
    where: str    # "line 7" or "entry 3"


def _from_file(
    name: str, path: Path, files: Sequence[tuple[str, str]], raw_name: str, mode: str, log: Logger
) -> Labelling:
    shown = f"{raw_name}/{name}"
    if name == LABELS_CSV:
        entries = _read_csv(path, shown)
        order = None
    else:
        parsed = _read_dataset_json(path, shown)
        if parsed is None:
            if mode == "file":
                raise LabelError(f"{shown}: its \"labels\" is null (an unlabelled StyleGAN dataset); add labels, "
                                 "or set preprocess.labels to folders or none")
            log.info("preprocess: no classes (%s says \"labels\": null)", shown)
            return Labelling()
        entries, order = parsed
    by_file = _one_class_per_file(entries, shown)
    scanned = {rel for rel, _ in files}
    missing = sorted(rel for rel in by_file if rel not in scanned)
    listed = {rel: entry.cls for rel, entry in by_file.items() if rel in scanned}
    if not listed:
        examples = _examples(sorted(by_file)) if by_file else "none: it lists no images"
        raise LabelError(
            f"{shown}: none of its {len(by_file)} image paths is a file in {raw_name} (paths listed: {examples}). "
            f"Paths are relative to {raw_name} and use '/', e.g. forest/a.jpg for {raw_name}/forest/a.jpg"
        )
    if order is None:
        classes = sorted(set(listed.values()))
        index = {cls: i for i, cls in enumerate(classes)}
    else:
        used = sorted(set(listed.values()))
        classes = [order(label) for label in used]
        index = {label: i for i, label in enumerate(used)}
    _refuse_case_twins(classes, shown)

    notes = []
    if missing:
        notes.append(f"{shown}: {len(missing)} listed image(s) are not files in {raw_name} and were ignored: "
                     f"{_examples(missing)}")
    unlabelled = tuple(
        (rel, f"{raw_name}/{rel}: not listed in {shown}, so it has no class; left out (add it to {name})")
        for rel, _ in files if rel not in listed
    )
    if unlabelled:
        notes.append(f"{len(unlabelled)} image file(s) of {raw_name} are not listed in {shown} and were left out "
                     f"(reason {NO_LABEL} in qa_report.json): {_examples([rel for rel, _ in unlabelled])}")
    return Labelling(
        classes=tuple(classes),
        source=f"file:{name}",
        of_file={rel: index[cls] for rel, cls in listed.items()},
        unlabelled=unlabelled,
        notes=tuple(notes),
    )


def _read_csv(path: Path, shown: str) -> list[_Entry]:
    text = _read_text(path, shown)
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    columns = [cell.strip().lower() for cell in header] if header else []
    if "file" not in columns or "class" not in columns:
        raise LabelError(
            f"{shown}: the first line must name the columns `file,class` (found {','.join(header or []) or 'nothing'}); "
            "then one line per image: its path relative to the raw folder, and its class name"
        )
    file_at, class_at = columns.index("file"), columns.index("class")
    entries = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        where = f"line {reader.line_num}"
        if len(row) <= max(file_at, class_at):
            raise LabelError(f"{shown} {where}: expected the columns {','.join(columns)}, got {','.join(row)!r}")
        cls = row[class_at].strip()
        if not cls:
            raise LabelError(f"{shown} {where}: no class for {row[file_at].strip()!r}; give every listed image a class")
        check_class_name(cls, f"{shown} {where}")
        entries.append(_Entry(_relative_path(row[file_at].strip(), f"{shown} {where}"), cls, where))
    return entries


def _read_dataset_json(path: Path, shown: str) -> tuple[list[_Entry], Any] | None:
    """The entries and a function from integer label to class name; None when "labels" is null."""
    try:
        document = json.loads(_read_text(path, shown))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{shown}: not valid JSON ({exc}); StyleGAN's format is "
                         '{"labels": [["forest/a.jpg", 0], ...]}') from None
    if not isinstance(document, dict) or "labels" not in document:
        raise LabelError(f'{shown}: expected an object with a "labels" list, StyleGAN\'s format: '
                         '{"labels": [["forest/a.jpg", 0], ...], "classes": ["forest", ...] (optional)}')
    if document["labels"] is None:
        return None
    names = document.get("classes")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LabelError(f'{shown}: "classes" must be a list of class names in label order, e.g. ["forest", "sea"]')
        for name in names:
            check_class_name(name, f'{shown} ("classes")')
        twice = [n for n, c in Counter(names).items() if c > 1]
        if twice:
            raise LabelError(f'{shown}: "classes" names {_examples(twice)} more than once; each class once, in label order')
    if not isinstance(document["labels"], list):
        raise LabelError(f'{shown}: "labels" must be a list of [path, integer label] pairs')
    entries = []
    for number, item in enumerate(document["labels"], start=1):
        where = f"entry {number} of \"labels\""
        valid = (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                 and isinstance(item[1], int) and not isinstance(item[1], bool) and item[1] >= 0)
        if not valid:
            raise LabelError(f"{shown} {where}: expected [\"path\", integer class label >= 0], got {json.dumps(item)[:80]} "
                             "(only class labels are supported, not label vectors)")
        if names is not None and item[1] >= len(names):
            raise LabelError(f'{shown} {where}: label {item[1]} but "classes" names only {len(names)} classes')
        entries.append(_Entry(_relative_path(item[0], f"{shown} {where}"), item[1], where))
    return entries, (lambda label: names[label]) if names is not None else str


def _one_class_per_file(entries: list[_Entry], shown: str) -> dict[str, _Entry]:
    by_file: dict[str, _Entry] = {}
    for entry in entries:
        first = by_file.setdefault(entry.rel, entry)
        if first.cls != entry.cls:
            raise LabelError(
                f"{shown}: {entry.rel} is in two classes: {first.cls!r} on {first.where} and {entry.cls!r} on "
                f"{entry.where}; an image has one class, so keep one of them"
            )
    return by_file


def _relative_path(text: str, where: str) -> str:
    if "\\" in text:
        raise LabelError(f"{where}: {text!r}: separate folders with '/', not '\\'")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or str(path) == ".":
        raise LabelError(f"{where}: {text!r} is not a path inside the raw folder; give it relative to the raw "
                         "folder, e.g. forest/a.jpg")
    return str(path)  # "./a.png" and "a//b.png" become "a.png" and "a/b.png", as the scan names them


def _read_text(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSV with a BOM
    except UnicodeDecodeError as exc:
        raise LabelError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise LabelError(f"{shown}: cannot read ({exc.strerror})") from None


# --------------------------------------------------------------------------- helpers


def _refuse_case_twins(names: Sequence[str], where: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        twin = seen.setdefault(name.lower(), name)
        if twin != name:
            raise LabelError(f"{where}: classes {twin!r} and {name!r} differ only in case, so they would be one file "
                             "on macOS and Windows; rename or merge one of them")


def _looks_like_image(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:EXAMPLES_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > EXAMPLES_SHOWN else "")
