"""Every refused upload: a 4xx naming the file and why, and nothing left behind."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import nrrd
import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.tables import Case, StoredFile
from tests.app.conftest import Api, stored_files, zip_of


def zip_entries(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def assert_nothing_kept(api: Api, dataset_id: int) -> None:
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == 0
    with api.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 0
    assert stored_files(api.store) == []


def new_dataset(api: Api) -> int:
    return api.post("/v1/datasets", json={"name": "d"}).json()["id"]


def nan_volume(folder: Path) -> Path:
    volume = np.ones((8, 8, 3), np.float32)
    volume[2, 2, 1] = np.nan
    path = folder / "nan_case.nrrd"
    nrrd.write(str(path), volume)
    return path


REFUSED = [
    (
        "slip.zip",
        lambda png: zip_entries({"../evil.png": png}),
        422,
        "unsafe_path",
        "slip.zip:../evil.png",
    ),
    (
        "win.zip",
        lambda png: zip_entries({"..\\..\\evil.png": png}),
        422,
        "unsafe_path",
        "win.zip:..\\..\\evil.png",
    ),
    (
        "abs.zip",
        lambda png: zip_entries({"/tmp/evil.png": png}),
        422,
        "unsafe_path",
        "abs.zip:/tmp/evil.png",
    ),
    (
        "link.zip",
        lambda png: zip_entries({"ok.png": png}, symlink="link.png"),
        422,
        "unsafe_path",
        "link.zip:link.png",
    ),
    (
        "docs.zip",
        lambda png: zip_entries({"a.png": png, "docs/readme.md": b"hi"}),
        422,
        "unsupported_format",
        "docs.zip:docs/readme.md",
    ),
    (
        "twice.zip",
        lambda png: zip_entries({"x/a.png": png, "y/a.png": png}),
        422,
        "duplicate_case",
        "twice.zip:y/a.png",
    ),
    ("broken.zip", lambda _png: b"PK\x03\x04 this is not a zip", 422, "bad_zip", "broken.zip"),
    ("notes.txt", lambda _png: b"hello", 422, "unsupported_format", "notes.txt"),
    (
        "scan.png",
        lambda _png: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        422,
        "unreadable_file",
        "scan.png",
    ),
    (
        "bomb.zip",
        lambda _png: zip_entries({"a.png": b"\x00" * (12 * 1024 * 1024)}),
        413,
        "upload_too_large",
        "bomb.zip",
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "status", "code", "file"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused_uploads_name_the_file(api_factory, hc18, name, make, status, code, file):
    api = api_factory(max_uncompressed_bytes=8 * 1024 * 1024)
    images, _ = hc18
    dataset_id = new_dataset(api)
    files = [(p.name, p.read_bytes()) for p in images[:2]] + [(name, make(images[0].read_bytes()))]
    response = api.client.post(
        f"/v1/datasets/{dataset_id}/images",
        headers=api.headers["annotator"],
        files=[("files", (n, data, "application/octet-stream")) for n, data in files],
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["file"] == file
    assert file in body["detail"]
    assert_nothing_kept(api, dataset_id)


def test_image_with_nan_is_refused(api, hc18, tmp_path):
    dataset_id = new_dataset(api)
    response = api.upload(f"/v1/datasets/{dataset_id}/images", [nan_volume(tmp_path)])
    assert response.status_code == 422
    assert response.json()["code"] == "image_not_finite"
    assert response.json()["file"] == "nan_case.nrrd"
    assert_nothing_kept(api, dataset_id)


def test_2d_and_3d_do_not_mix(api, hc18, mr):
    dataset_id = new_dataset(api)
    response = api.upload(f"/v1/datasets/{dataset_id}/images", [hc18[0][0], mr[0][0]])
    assert response.status_code == 422 and response.json()["code"] == "shape_mismatch"
    assert_nothing_kept(api, dataset_id)
    # ... nor across uploads.
    assert api.upload(f"/v1/datasets/{dataset_id}/images", [hc18[0][0]]).status_code == 201
    later = api.upload(f"/v1/datasets/{dataset_id}/images", [mr[0][0]])
    assert later.status_code == 422 and later.json()["code"] == "shape_mismatch"
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == 1


def test_too_many_files(api_factory, hc18):
    api = api_factory(max_files=3)
    images, _ = hc18
    dataset_id = new_dataset(api)
    as_files = api.upload(f"/v1/datasets/{dataset_id}/images", images[:4])
    assert as_files.status_code == 413 and as_files.json()["code"] == "too_many_files"
    as_zip = api.upload_bytes(f"/v1/datasets/{dataset_id}/images", "all.zip", zip_of(images[:4]))
    assert as_zip.status_code == 413 and as_zip.json()["code"] == "too_many_files"
    assert as_zip.json()["file"] == "all.zip"
    assert_nothing_kept(api, dataset_id)


def test_request_over_the_size_limit(api_factory, hc18):
    api = api_factory(max_request_bytes=150_000)
    images, _ = hc18
    dataset_id = new_dataset(api)
    declared = api.upload(f"/v1/datasets/{dataset_id}/images", images[:2])
    assert declared.status_code == 413 and declared.json()["code"] == "request_too_large"

    # Without a Content-Length the body is counted as it streams in.
    boundary = "segauditboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(40):
            yield b"\x00" * 8192

    streamed = api.client.post(
        f"/v1/datasets/{dataset_id}/images",
        headers={
            **api.headers["annotator"],
            "content-type": f"multipart/form-data; boundary={boundary}",
        },
        content=body(),
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "request_too_large"
    assert_nothing_kept(api, dataset_id)


def test_empty_upload(api):
    dataset_id = new_dataset(api)
    response = api.client.post(
        f"/v1/datasets/{dataset_id}/images",
        headers=api.headers["annotator"],
        data={"note": "no files here"},
    )
    assert response.status_code == 422 and response.json()["code"] == "empty_upload"


def test_a_mhd_whose_voxels_are_in_another_file_is_refused_up_front(api, mr, tmp_path):
    """A ``.mhd`` arrives without its data file (one file per image): refused by its header
    with what to send instead, alone or zipped with its ``.raw``; a ``.mha`` is taken."""
    import SimpleITK as sitk

    volume = sitk.ReadImage(str(mr[0][0]))
    sitk.WriteImage(volume, str(tmp_path / "brain1.mhd"))  # beside it: brain1.raw
    sitk.WriteImage(volume, str(tmp_path / "brain1.mha"))
    dataset_id = new_dataset(api)
    url = f"/v1/datasets/{dataset_id}/images"

    alone = api.upload(url, [tmp_path / "brain1.mhd"])
    assert alone.status_code == 422, alone.text
    body = alone.json()
    assert body["code"] == "unsupported_format" and body["file"] == "brain1.mhd"
    assert "brain1.raw" in body["detail"] and ".mha" in body["detail"]
    assert_nothing_kept(api, dataset_id)

    paired = api.upload_bytes(
        url, "mr.zip", zip_of([tmp_path / "brain1.raw", tmp_path / "brain1.mhd"])
    )
    assert paired.status_code == 422, paired.text
    assert paired.json()["code"] == "unsupported_format"
    assert paired.json()["file"] == "mr.zip:brain1.raw" and ".mha" in paired.json()["detail"]
    assert_nothing_kept(api, dataset_id)

    one_file = api.upload(url, [tmp_path / "brain1.mha"])
    assert one_file.status_code == 201, one_file.text
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == 1
