"""The one receiver of uploaded files and zips, in its two uses: image files, DICOM exports."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from app.dicom_uploads import receive_dicom
from app.errors import Invalid, TooLarge
from app.uploads import Limits, receive

LIMITS = Limits(max_files=10, max_bytes=1024 * 1024)


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def parts(files: dict[str, bytes]) -> list[tuple[str | None, io.BytesIO]]:
    return [(name, io.BytesIO(data)) for name, data in files.items()]


def staging(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_image_files_are_flattened_and_zips_removed_once_unpacked(tmp_path):
    upload = parts({"a.png": b"a", "cases.zip": zipped({"x/b.png": b"b", "y/c.nii.gz": b"c"})})
    received = receive(upload, tmp_path, LIMITS)
    assert sorted((f.name, f.case) for f in received) == [
        ("a.png", "a"),
        ("b.png", "b"),
        ("c.nii.gz", "c"),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["files"]


def test_an_image_upload_never_unpacks_a_zip_inside_a_zip(tmp_path):
    inner = zipped({"b.png": b"b"})
    with pytest.raises(Invalid) as refused:
        receive(parts({"cases.zip": zipped({"inner.zip": inner})}), staging(tmp_path, "a"), LIMITS)
    assert refused.value.code == "unsupported_format"
    assert refused.value.file == "cases.zip:inner.zip"
    # a zip named as an image is a (bad) image, left to the image checks
    upload = parts({"cases.zip": zipped({"a.png": inner})})
    (received,) = receive(upload, staging(tmp_path, "b"), LIMITS)
    assert received.written.path.read_bytes() == inner


def test_a_dicom_upload_unpacks_nested_zips_and_counts_only_what_they_hold(tmp_path):
    inner = zipped({"IM1": b"1", "IM2": b"2"})
    upload = parts({"export.zip": zipped({"a/IM1": b"0", "a/more.zip": inner}), "IM9": b"9"})
    received = receive_dicom(upload, tmp_path, Limits(max_files=4, max_bytes=1024 * 1024))
    assert sorted(received.shown.values()) == [
        "IM9",
        "export.zip:a/IM1",
        "export.zip:a/more.zip:IM1",
        "export.zip:a/more.zip:IM2",
    ]
    assert len({p.parent for p in received.shown}) == 4  # a folder each: names may repeat
    assert [p.name for p in tmp_path.iterdir()] == ["upload"]
    assert len(list((tmp_path / "upload").iterdir())) == 4  # the inner zip's folder is gone


def test_a_dicom_upload_counts_an_inner_zip_while_it_is_unpacked(tmp_path):
    upload = parts({"export.zip": zipped({"a/more.zip": zipped({"IM1": b"1", "IM2": b"2"})})})
    with pytest.raises(TooLarge) as refused:
        receive_dicom(upload, tmp_path, Limits(max_files=2, max_bytes=1024 * 1024))
    assert refused.value.code == "too_many_files"
    assert refused.value.file == "export.zip:a/more.zip"
