"""Class labels in preprocessing (ganlib/data/labels.py): from folders, labels.csv or dataset.json, aligned with
the kept images, checked when the prepared dataset is opened, and every bad label a clear error naming its file."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlib.config import Params, load_params
from ganlib.data import dataset, images, labels
from ganlib.data.dataset import PreparedDatasetError, open_prepared
from ganlib.data.labels import LabelError
from ganlib.data.preprocess import prepare_dataset

REPO = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("test_labels")
RAW, PREPARED = "data/raw", "data/prepared"

RED, GREEN, BLUE, GREY = (250, 0, 0), (0, 250, 0), (0, 0, 250), (128, 128, 128)


def make_params(*overrides: str) -> Params:
    base = [f"base.paths.raw={RAW}", f"base.paths.prepared={PREPARED}", "preprocess.resolution=32",
            "preprocess.min_side=16", "preprocess.workers=1",
            "preprocess.max_pixels=1000000"]  # within Pillow's own limit: decoded in this process, no worker pool
    return load_params(REPO / "params.yaml", overrides=[*base, *overrides])


def save(path: Path, colour: tuple[int, int, int], shade: int = 0) -> None:
    """A 16 px image of `colour`; `shade` makes images of one colour differ (no duplicates, no near-duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((16, 16, 3), np.uint8)
    pixels[:] = colour
    pixels[: 1 + shade % 15, :, :] = (shade * 37) % 256  # a stripe whose height and grey differ per shade
    Image.fromarray(pixels).save(path)


def prepare(tmp_path: Path, *overrides: str):
    summary = prepare_dataset(make_params(*overrides), LOG, root=tmp_path)
    return summary, open_prepared(tmp_path / PREPARED)


def qa_report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / PREPARED / dataset.QA_REPORT_FILE).read_text())


def image_colours(prepared: dataset.PreparedDataset) -> list[tuple[int, int, int]]:
    """The colour of each prepared image, read from its bottom row (below any stripe)."""
    return [tuple(int(c) for c in np.round(image[-1].mean(axis=0), -1)) for image in prepared.images]


def test_labels_from_class_folders_follow_the_images(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    for i in range(3):
        save(raw / "sea" / f"{i}.png", BLUE, i)
        save(raw / "forest" / f"{i}.png", GREEN, i + 3)
    save(raw / "forest" / "deeper" / "x.png", GREEN, 7)  # deeper folders count as their first-level folder
    save(raw / "desert" / "a.png", RED, 8)

    summary, prepared = prepare(tmp_path, "preprocess.labels=folders")
    assert prepared.class_names == ("desert", "forest", "sea")  # sorted by name: index = position
    assert isinstance(prepared.labels, np.memmap) and prepared.labels.dtype == np.int32
    colour_of_class = {"desert": (250, 0, 0), "forest": (0, 250, 0), "sea": (0, 0, 250)}
    assert [colour_of_class[prepared.class_names[i]] for i in prepared.labels] == image_colours(prepared)

    manifest = prepared.manifest
    assert manifest["classes"] == ["desert", "forest", "sea"]
    assert manifest["class_counts"] == {"desert": 1, "forest": 4, "sea": 3} == summary.class_counts
    assert manifest["labels_source"] == summary.labels_source == "folders"
    labels_bytes = (tmp_path / PREPARED / dataset.LABELS_FILE).read_bytes()
    assert manifest["labels_sha256"] == prepared.labels_hash == hashlib.sha256(labels_bytes).hexdigest()
    images_bytes = (tmp_path / PREPARED / dataset.IMAGES_FILE).read_bytes()
    assert prepared.content_hash == hashlib.sha256(images_bytes).hexdigest()  # the images' hash alone

    prepare(tmp_path, "preprocess.labels=folders")
    assert (tmp_path / PREPARED / dataset.LABELS_FILE).read_bytes() == labels_bytes  # deterministic


def test_labels_from_labels_csv(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "a.png", RED, 1)
    save(raw / "b.png", GREEN, 2)
    save(raw / "sub" / "c.png", RED, 3)
    save(raw / "unlisted.png", BLUE, 4)
    (raw / "labels.csv").write_text(
        "file,class\n"
        "a.png,warm\n"
        "./sub/c.png,warm\n"       # ./ is the same path
        "b.png,Green-1.0\n"
        "\n"
        "a.png,warm\n"             # listed twice with the same class: fine
        "gone.png,warm\n"          # no such image: a warning with a count
    )
    summary, prepared = prepare(tmp_path, "preprocess.labels=file")
    assert prepared.class_names == ("Green-1.0", "warm")
    assert [prepared.class_names[i] for i in prepared.labels] == ["warm", "Green-1.0", "warm"]  # a, b, sub/c
    assert prepared.manifest["labels_source"] == "file:labels.csv"

    qa = qa_report(tmp_path)
    rejects = {r["path"]: r for r in qa["rejects"]}
    assert set(rejects) == {"unlisted.png"}, "labels.csv is not an image and must not be rejected as one"
    assert rejects["unlisted.png"]["reason"] == labels.NO_LABEL
    assert "not listed in data/raw/labels.csv" in rejects["unlisted.png"]["detail"]
    assert qa["rejects_by_reason"] == {labels.NO_LABEL: 1}
    warnings = "\n".join(qa["warnings"])
    assert "1 listed image(s) are not files in data/raw" in warnings and "gone.png" in warnings
    assert "1 image file(s) of data/raw are not listed" in warnings
    assert list(summary.warnings) == qa["warnings"]


def test_labels_from_dataset_json_keep_its_numbering(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    for i in range(4):
        save(raw / "img" / f"{i}.png", GREY, i)
    entries = [["img/0.png", 10], ["img/1.png", 2], ["img/2.png", 2], ["img/3.png", 0]]
    (raw / "dataset.json").write_text(json.dumps({"labels": entries}))
    _, prepared = prepare(tmp_path)  # auto: a labels file is there
    # StyleGAN numbers its classes: label order (0, 2, 10), not name order ("0", "10", "2").
    assert prepared.class_names == ("0", "2", "10")
    assert prepared.labels.tolist() == [2, 1, 1, 0]
    assert prepared.manifest["labels_source"] == "file:dataset.json"
    assert not qa_report(tmp_path)["rejects"]

    named = {"labels": [["img/0.png", 1], ["img/1.png", 0], ["img/2.png", 1], ["img/3.png", 1]],
             "classes": ["night", "day"]}
    (raw / "dataset.json").write_text(json.dumps(named))
    _, prepared = prepare(tmp_path, "preprocess.labels=file")
    assert prepared.class_names == ("night", "day") and prepared.labels.tolist() == [1, 0, 1, 1]

    (raw / "dataset.json").write_text(json.dumps({"labels": None}))  # StyleGAN's unlabelled dataset
    _, prepared = prepare(tmp_path)
    assert prepared.labels is None and prepared.class_names == ()
    with pytest.raises(LabelError, match=r"data/raw/dataset.json: its \"labels\" is null"):
        prepare(tmp_path, "preprocess.labels=file")


@pytest.mark.parametrize("layout, expected", [
    ({"a/1.png": RED, "b/2.png": GREEN}, ("a", "b")),                         # 2 folders, nothing flat
    ({"a/1.png": RED, "b/2.png": GREEN, "notes.txt": None}, ("a", "b")),      # a flat non-image does not count
    ({"a/1.png": RED, "b/2.png": GREEN, "loose.png": BLUE}, ()),              # a flat image: no classes
    ({"a/1.png": RED, "a/x/2.png": GREEN}, ()),                               # one folder is not classes
    ({"1.png": RED, "2.png": GREEN}, ()),                                     # flat
    ({"a/1.png": RED, "b/2.png": GREEN, "labels.csv": "file,class\na/1.png,x\nb/2.png,y\n"}, ("x", "y")),
])
def test_auto_takes_a_labels_file_else_class_folders_else_none(tmp_path: Path, layout, expected) -> None:
    raw = tmp_path / RAW
    for shade, (name, content) in enumerate(layout.items()):
        path = raw / name
        if isinstance(content, tuple):
            save(path, content, shade)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content or "not an image\n")
    _, prepared = prepare(tmp_path)
    assert prepared.class_names == expected
    assert (prepared.labels is None) == (not expected)
    assert (tmp_path / PREPARED / dataset.LABELS_FILE).exists() == bool(expected)
    if not expected:
        assert prepared.manifest["labels_sha256"] is None and prepared.manifest["labels_source"] is None
        assert prepared.manifest["class_counts"] == {} and prepared.manifest["classes"] == []


def test_labels_none_ignores_folders_and_labels_files(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "a" / "1.png", RED, 1)
    save(raw / "b" / "2.png", GREEN, 2)
    (raw / "labels.csv").write_text("file,class\na/1.png,x\n")
    _, prepared = prepare(tmp_path, "preprocess.labels=none")
    assert prepared.labels is None and prepared.count == 2
    assert not qa_report(tmp_path)["rejects"]  # the labels file is still no image


def test_an_image_listed_in_two_classes_names_both_lines(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "a.png", RED, 1)
    save(raw / "b.png", GREEN, 2)
    (raw / "labels.csv").write_text("file,class\na.png,day\nb.png,day\na.png,night\n")
    with pytest.raises(LabelError) as error:
        prepare(tmp_path)
    message = str(error.value)
    assert "data/raw/labels.csv" in message and "a.png is in two classes" in message
    assert "'day' on line 2" in message and "'night' on line 4" in message
    assert not (tmp_path / PREPARED).exists()

    (raw / "labels.csv").unlink()
    (raw / "dataset.json").write_text(json.dumps({"labels": [["a.png", 0], ["b.png", 0], ["a.png", 1]]}))
    with pytest.raises(LabelError, match=r"a.png is in two classes: 0 on entry 1 of \"labels\" and 1 on entry 3"):
        prepare(tmp_path)


def test_the_same_image_in_two_class_folders_keeps_the_first_and_names_both_classes(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "day" / "a.png", RED, 1)
    save(raw / "day" / "b.png", GREEN, 2)
    (raw / "night").mkdir()
    (raw / "night" / "copy.png").write_bytes((raw / "day" / "a.png").read_bytes())
    save(raw / "night" / "c.png", BLUE, 3)
    summary, prepared = prepare(tmp_path)
    assert prepared.count == 3 and prepared.labels.tolist() == [0, 0, 1]
    [reject] = qa_report(tmp_path)["rejects"]
    assert reject["path"] == "night/copy.png" and reject["reason"] == labels.IN_TWO_CLASSES
    assert "(class night)" in reject["detail"] and "data/raw/day/a.png (class day, kept)" in reject["detail"]
    assert any("byte-identical to an image of another class" in w for w in summary.warnings)


@pytest.mark.parametrize("folder", ["my photos", "_private", "été", "a" * 65])
def test_an_unsafe_class_folder_name_is_an_error_naming_it(tmp_path: Path, folder: str) -> None:
    raw = tmp_path / RAW
    save(raw / "fine" / "1.png", RED, 1)
    save(raw / folder / "2.png", GREEN, 2)
    with pytest.raises(LabelError) as error:
        prepare(tmp_path, "preprocess.labels=folders")
    message = str(error.value)
    assert f"data/raw/{folder}/" in message and repr(folder) in message
    assert "letters, digits, '_', '.', '-'" in message


def test_an_unsafe_class_name_in_labels_csv_names_its_line(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "a.png", RED, 1)
    (raw / "labels.csv").write_text("file,class\na.png,../etc\n")
    with pytest.raises(LabelError, match=r"data/raw/labels.csv line 2: class name '\.\./etc' is not allowed"):
        prepare(tmp_path)


def test_classes_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "Forest" / "1.png", RED, 1)
    save(raw / "forest" / "2.png", GREEN, 2)
    with pytest.raises(LabelError, match="'Forest' and 'forest' differ only in case"):
        prepare(tmp_path)


def test_a_flat_folder_with_labels_folders_names_the_images_and_the_fix(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "a.png", RED, 1)
    save(raw / "sea" / "b.png", BLUE, 2)
    with pytest.raises(LabelError) as error:
        prepare(tmp_path, "preprocess.labels=folders")
    message = str(error.value)
    assert "data/raw/a.png" in message and "move each into a class folder" in message
    assert "preprocess.labels: none" in message
    assert not (tmp_path / PREPARED).exists()


def test_a_labels_file_that_labels_nothing_here_is_an_error(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "photos" / "a.png", RED, 1)
    (raw / "labels.csv").write_text("file,class\n/home/me/photos/a.png,x\n")
    with pytest.raises(LabelError, match="is not a path inside the raw folder"):
        prepare(tmp_path)
    (raw / "labels.csv").write_text("file,class\na.png,x\n")  # relative to the wrong folder
    with pytest.raises(LabelError, match=r"none of its 1 image paths is a file in data/raw .*forest/a.jpg"):
        prepare(tmp_path)
    (raw / "labels.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(LabelError, match="the first line must name the columns `file,class`"):
        prepare(tmp_path)


def test_rejected_images_take_their_labels_with_them(tmp_path: Path) -> None:
    raw = tmp_path / RAW
    save(raw / "blue" / "1.png", BLUE, 1)
    (raw / "blue" / "2-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save(raw / "blue" / "3.png", BLUE, 3)
    save(raw / "green" / "1.png", GREEN, 4)
    save(raw / "green" / "2-tiny.png", GREEN, 5)
    Image.new("RGB", (4, 4), GREEN).save(raw / "green" / "2-tiny.png")
    save(raw / "green" / "3.png", GREEN, 6)
    (raw / "red").mkdir()
    (raw / "red" / "only-bad.png").write_text("not an image\n")  # a class with no usable image
    save(raw / "zz" / "1.png", RED, 7)

    summary, prepared = prepare(tmp_path)
    reasons = {r["path"]: r["reason"] for r in qa_report(tmp_path)["rejects"]}
    assert reasons == {"blue/2-corrupt.png": images.NOT_AN_IMAGE, "green/2-tiny.png": images.TOO_SMALL,
                       "red/only-bad.png": images.NOT_AN_IMAGE}
    # "red" is left out and the indices closed up: zz is 2, not 3.
    assert prepared.class_names == ("blue", "green", "zz")
    assert prepared.labels.tolist() == [0, 0, 1, 1, 2]
    colour_of_class = {"blue": (0, 0, 250), "green": (0, 250, 0), "zz": (250, 0, 0)}
    assert [colour_of_class[prepared.class_names[i]] for i in prepared.labels] == image_colours(prepared)
    assert any("no usable image and were left out: red" in w for w in summary.warnings)


def test_class_counts_and_warnings_reach_the_qa_report(tmp_path: Path, caplog) -> None:
    raw = tmp_path / RAW
    for i in range(22):
        save(raw / "big" / f"{i:02d}.png", GREY, i)
    save(raw / "small" / "0.png", RED, 30)
    save(raw / "small" / "1.png", RED, 31)
    with caplog.at_level(logging.INFO, logger="test_labels"):
        summary, _ = prepare(tmp_path)
    qa = qa_report(tmp_path)
    assert qa["labels"]["class_counts"] == {"big": 22, "small": 2}
    assert qa["labels"]["source"] == "folders" and qa["labels"]["classes"] == ["big", "small"]
    assert qa["labels"]["min_class_images"] == labels.MIN_CLASS_IMAGES
    warnings = qa["warnings"]
    assert any(f"fewer than {labels.MIN_CLASS_IMAGES} images: big (22), small (2)" in w for w in warnings)
    assert any("imbalanced: big has 22 images, small 2 (11x" in w for w in warnings)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all(any(w in line for line in logged) for w in warnings)
    assert "2 classes from folders: big 22, small 2" in caplog.text
    assert summary.class_counts == {"big": 22, "small": 2}


def test_balance_warnings_stay_quiet_for_a_balanced_dataset() -> None:
    assert labels.balance_warnings({"a": 60, "b": 600}, "data/raw") == []
    [warning] = labels.balance_warnings({"a": 60, "b": 601}, "data/raw")
    assert "imbalanced" in warning


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    raw = tmp_path / RAW
    save(raw / "a" / "1.png", RED, 1)
    save(raw / "a" / "2.png", RED, 2)
    save(raw / "b" / "1.png", GREEN, 3)
    prepare(tmp_path)
    return tmp_path / PREPARED


def test_open_prepared_refuses_labels_of_the_wrong_length(labelled: Path) -> None:
    np.save(labelled / dataset.LABELS_FILE, np.zeros(2, np.int32))
    with pytest.raises(PreparedDatasetError) as error:
        open_prepared(labelled)
    message = str(error.value)
    assert str(labelled / dataset.LABELS_FILE) in message and "int32 [3]" in message
    assert "dvc repro preprocess" in message


@pytest.mark.parametrize("bad", [np.array([0, 1, 2], np.int32), np.array([0, -1, 1], np.int32),
                                 np.array([0, 1, 1], np.int64)])
def test_open_prepared_refuses_labels_out_of_range_or_of_another_type(labelled: Path, bad: np.ndarray) -> None:
    np.save(labelled / dataset.LABELS_FILE, bad)
    with pytest.raises(PreparedDatasetError, match=r"labels.npy: .*dvc repro preprocess"):
        open_prepared(labelled)


def test_open_prepared_refuses_a_missing_labels_file(labelled: Path) -> None:
    (labelled / dataset.LABELS_FILE).unlink()
    with pytest.raises(PreparedDatasetError, match=r"labels.npy: missing, but .*manifest.json names 2 classes"):
        open_prepared(labelled)


def test_a_manifest_from_before_labels_opens_unlabelled(labelled: Path) -> None:
    manifest_path = labelled / dataset.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    for key in ("classes", "class_counts", "labels_sha256", "labels_source"):
        del manifest[key]
    manifest_path.write_text(json.dumps(manifest))
    (labelled / dataset.LABELS_FILE).unlink()
    prepared = open_prepared(labelled)
    assert prepared.labels is None and prepared.class_names == () and prepared.labels_hash is None
