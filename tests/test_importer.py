"""ganlib.data.importer: photos in, nothing outside the destination touched, all or nothing."""

from __future__ import annotations

import io
import logging
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from ganlib.data import importer
from ganlib.data.importer import ADD, REPLACE, DatasetImportError, import_dataset

LOG = logging.getLogger("test_importer")


def png_bytes(colour: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root (relative name -> bytes); symlinks are listed, not followed."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = b"<symlink>"
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def add_tar_member(archive: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if data else None)


def test_folder_import_keeps_nested_names_and_only_images(tmp_path: Path) -> None:
    src, dest = tmp_path / "photos", tmp_path / "data" / "raw"
    (src / "trips" / "2021").mkdir(parents=True)
    (src / "trips" / "2021" / "a.JPG").write_bytes(png_bytes())
    (src / "b.png").write_bytes(png_bytes((1, 2, 3)))
    (src / "notes.txt").write_text("not an image\n")
    (src / ".DS_Store").write_bytes(b"junk")
    (src / ".thumbnails").mkdir()
    (src / ".thumbnails" / "t.png").write_bytes(png_bytes())
    (src / "link.png").symlink_to(src / "b.png")

    summary = import_dataset(src, dest, LOG)

    assert tree(dest) == {"b.png": png_bytes((1, 2, 3)), "trips/2021/a.JPG": png_bytes()}
    assert summary.imported == ("b.png", "trips/2021/a.JPG")
    assert {(s.name, s.reason) for s in summary.skipped} == {
        ("notes.txt", importer.NOT_AN_IMAGE_NAME),
        ("link.png", importer.SYMLINK),
    }
    assert summary.hidden_skipped == 2
    assert [p.name for p in tmp_path.joinpath("data").iterdir()] == ["raw"]  # no staging left behind


def test_a_labels_file_at_the_top_comes_along_and_nowhere_else(tmp_path: Path) -> None:
    """labels.csv / dataset.json give the images their classes (ganlib/data/labels.py): kept at the top level only."""
    src, dest = tmp_path / "photos", tmp_path / "raw"
    (src / "forest").mkdir(parents=True)
    (src / "forest" / "a.png").write_bytes(png_bytes())
    (src / "labels.csv").write_text("file,class\nforest/a.png,forest\n")
    (src / "dataset.json").write_text('{"labels": [["forest/a.png", 0]]}')
    (src / "forest" / "labels.csv").write_text("file,class\n")   # not where preprocess reads it

    summary = import_dataset(src, dest, LOG)
    assert sorted(tree(dest)) == ["dataset.json", "forest/a.png", "labels.csv"]
    assert {(s.name, s.reason) for s in summary.skipped} == {("forest/labels.csv", importer.NOT_AN_IMAGE_NAME)}


def test_a_labels_file_alone_is_no_dataset(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    (src / "labels.csv").write_text("file,class\n")
    with pytest.raises(DatasetImportError, match="no image files to import"):
        import_dataset(src, tmp_path / "raw", LOG)
    assert not (tmp_path / "raw").exists()


def test_reimport_counts_identical_files_and_refuses_to_overwrite_different_ones(tmp_path: Path) -> None:
    src, dest = tmp_path / "photos", tmp_path / "raw"
    src.mkdir()
    (src / "a.png").write_bytes(png_bytes())
    import_dataset(src, dest, LOG)

    (src / "new.png").write_bytes(png_bytes((4, 5, 6)))
    again = import_dataset(src, dest, LOG, existing=ADD)
    assert again.imported == ("new.png",) and again.already_present == ("a.png",)

    (src / "a.png").write_bytes(png_bytes((200, 0, 0)))   # same name, different photo
    (src / "later.png").write_bytes(png_bytes((7, 8, 9)))
    before = tree(dest)
    with pytest.raises(DatasetImportError, match=r"would overwrite 1 file\(s\): a\.png"):
        import_dataset(src, dest, LOG, existing=ADD)
    assert tree(dest) == before                            # all or nothing: later.png not added either


def test_zip_slip_and_zip_symlinks_never_write_outside_dest(tmp_path: Path) -> None:
    archive_path, dest = tmp_path / "in.zip", tmp_path / "work" / "raw"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("../evil.png", png_bytes())
        archive.writestr("a/../../evil2.png", png_bytes())
        archive.writestr("/abs/evil3.png", png_bytes())
        archive.writestr("..\\evil4.png", png_bytes())
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("ok/good.png", png_bytes())
    summary = import_dataset(archive_path, dest, LOG)

    assert tree(tmp_path / "work") == {"raw/ok/good.png": png_bytes()}
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "evil2.png").exists()
    reasons = {s.name: s.reason for s in summary.skipped}
    assert reasons == {
        "../evil.png": importer.UNSAFE_PATH,
        "a/../../evil2.png": importer.UNSAFE_PATH,
        "/abs/evil3.png": importer.UNSAFE_PATH,
        "..\\evil4.png": importer.UNSAFE_PATH,
        "link.png": importer.SYMLINK,
    }


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_tar_traversal_links_and_devices_never_write_outside_dest(tmp_path: Path, suffix: str, mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive_path, dest = tmp_path / f"in{suffix}", tmp_path / "work" / "raw"
    with tarfile.open(archive_path, mode) as archive:
        add_tar_member(archive, "../evil.png", png_bytes())
        add_tar_member(archive, str(outside / "abs.png"), png_bytes())
        # The classic: a symlink to a directory outside, then a file "through" it.
        add_tar_member(archive, "escape", type=tarfile.SYMTYPE, linkname=str(outside))
        add_tar_member(archive, "escape/through.png", png_bytes())
        add_tar_member(archive, "hard.png", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        add_tar_member(archive, "dev.png", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_tar_member(archive, "good.png", png_bytes())
    summary = import_dataset(archive_path, dest, LOG)

    assert tree(outside) == {}
    assert tree(tmp_path / "work") == {"raw/escape/through.png": png_bytes(), "raw/good.png": png_bytes()}
    assert not (dest / "escape").is_symlink()
    reasons = {s.name: s.reason for s in summary.skipped}
    assert reasons == {
        "../evil.png": importer.UNSAFE_PATH,
        str(outside / "abs.png"): importer.UNSAFE_PATH,
        "escape": importer.SYMLINK,
        "hard.png": importer.HARD_LINK,
        "dev.png": importer.SPECIAL_FILE,
    }


def test_repeated_and_clashing_member_names_keep_the_first(tmp_path: Path) -> None:
    archive_path, dest = tmp_path / "in.tar", tmp_path / "raw"
    with tarfile.open(archive_path, "w") as archive:
        add_tar_member(archive, "a.png", png_bytes((1, 1, 1)))
        add_tar_member(archive, "a.png", png_bytes((2, 2, 2)))
        add_tar_member(archive, "a.png/b.png", png_bytes())
        add_tar_member(archive, "d.png/c.png", png_bytes())
        add_tar_member(archive, "d.png", png_bytes())
    summary = import_dataset(archive_path, dest, LOG)
    assert tree(dest) == {"a.png": png_bytes((1, 1, 1)), "d.png/c.png": png_bytes()}
    assert [(s.name, s.reason) for s in summary.skipped] == [
        ("a.png", importer.DUPLICATE_NAME),
        ("a.png/b.png", importer.PATH_CLASH),
        ("d.png", importer.PATH_CLASH),
    ]


def test_existing_symlink_in_dest_cannot_redirect_writes(tmp_path: Path) -> None:
    outside, dest, src = tmp_path / "outside", tmp_path / "raw", tmp_path / "photos"
    outside.mkdir()
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.png").write_bytes(png_bytes())
    with pytest.raises(DatasetImportError, match="sub/a.png"):
        import_dataset(src, dest, LOG, existing=ADD)
    assert tree(outside) == {}


@pytest.mark.parametrize("existing", [ADD, REPLACE])
def test_zip_bomb_is_an_error_and_dest_is_untouched(tmp_path: Path, existing: str) -> None:
    """Also under --replace: the old files go only once the new import has fully succeeded."""
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "kept.png").write_bytes(png_bytes())
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("small.png", png_bytes())
        archive.writestr("huge.png", b"\0" * 200_000)
    with pytest.raises(DatasetImportError, match="zip bomb"):
        import_dataset(bomb, dest, LOG, max_total_bytes=100_000, existing=existing)
    assert tree(dest) == {"kept.png": png_bytes()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip", "raw"]


def test_tar_bomb_is_caught_while_streaming(tmp_path: Path) -> None:
    bomb, dest = tmp_path / "bomb.tar.gz", tmp_path / "raw"
    with tarfile.open(bomb, "w:gz") as archive:
        for index in range(3):
            add_tar_member(archive, f"{index}.png", b"\0" * 60_000)
    with pytest.raises(DatasetImportError, match="max_total_bytes=100000"):
        import_dataset(bomb, dest, LOG, max_total_bytes=100_000)
    assert not dest.exists()


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    dest = tmp_path / "raw"
    with pytest.raises(DatasetImportError, match="not found"):
        import_dataset(tmp_path / "nope", dest, LOG)
    text = tmp_path / "photos.txt"
    text.write_text("hello\n")
    with pytest.raises(DatasetImportError, match="not a folder, .zip or .tar"):
        import_dataset(text, dest, LOG)
    only_text = tmp_path / "docs"
    only_text.mkdir()
    (only_text / "readme.md").write_text("hi\n")
    with pytest.raises(DatasetImportError, match="no image files to import"):
        import_dataset(only_text, dest, LOG)
    truncated = tmp_path / "cut.tar.gz"
    with tarfile.open(truncated, "w:gz") as archive:
        add_tar_member(archive, "a.png", os.urandom(50_000))
    truncated.write_bytes(truncated.read_bytes()[:20_000])
    with pytest.raises(DatasetImportError, match="cut.tar.gz"):
        import_dataset(truncated, dest, LOG)
    with pytest.raises(DatasetImportError, match="contain one another"):
        import_dataset(tmp_path, dest, LOG)
    assert not dest.exists()


def test_safe_member_name() -> None:
    assert str(importer.safe_member_name("./a/b.png")) == "a/b.png"
    for bad in ("../a.png", "a/../../b.png", "/etc/x.png", "C:/x.png", "..\\x.png", "", "a\x00.png", "./"):
        assert importer.safe_member_name(bad) is None, bad
