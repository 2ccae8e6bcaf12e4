"""Bombs are refused before they cost: a zip by its central directory's sizes and compression
ratios before anything is written (and by the bytes counted while unpacking, since sizes can
lie), an image by its header's size before it is decoded. Refusals name the archive and the
entry as the client sent them, and never a path on the server.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from app.errors import TooLarge
from app.uploads import Limits, Receiver
from tests.app.conftest import Api, stored_files
from tests.app.dicom_data import export_zip, post_files
from tests.app.test_bad_uploads import assert_nothing_kept, new_dataset

MIB = 1024**2
# An absolute path: a slash, then at least two path parts (``/tmp/x/``, ``/var/lib/...``).
ABSOLUTE = re.compile(r"(?<![\w.:])/(?:[\w.-]+/)+[\w.-]*")


def zip_of_zeros(entries: dict[str, int]) -> bytes:
    """A zip whose entries hold ``size`` zero bytes each, deflated (about 1030:1)."""
    buffer = io.BytesIO()
    chunk = bytes(MIB)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, size in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=size > 2**31) as out:
                for _ in range(size // MIB):
                    out.write(chunk)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gib_of_zeros() -> bytes:
    return zip_of_zeros({"scans/zeros.png": 1024 * MIB})


def refused(response: object, status: int, code: str) -> dict[str, str]:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    body: dict[str, str] = response.json()  # type: ignore[attr-defined]
    assert body["code"] == code, body
    return body


def test_a_gib_of_zeros_in_a_1_mb_zip_is_refused_at_once(api: Api, gib_of_zeros: bytes) -> None:
    assert len(gib_of_zeros) < 1.1 * MIB
    dataset = new_dataset(api)
    started = time.perf_counter()
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "bomb.zip", gib_of_zeros)
    elapsed = time.perf_counter() - started
    body = refused(response, 413, "compression_ratio")
    assert body["file"] == "bomb.zip:scans/zeros.png"
    assert body["detail"].startswith("bomb.zip:scans/zeros.png: declares 1073741824 bytes")
    assert elapsed < 2.0, elapsed  # unpacking it took 8 s; refusing it reads the directory only
    assert_nothing_kept(api, dataset)


def test_many_entries_under_the_floor_are_refused_as_one_zip(api_factory: object) -> None:
    api: Api = api_factory(compression_ratio_floor_bytes=4 * MIB)  # type: ignore[operator]
    dataset = new_dataset(api)
    data = zip_of_zeros({f"z{i}.png": 3 * MIB for i in range(8)})  # each entry under 4 MiB
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "many.zip", data)
    body = refused(response, 413, "compression_ratio")
    assert body["file"] == "many.zip" and "declares 25165824 bytes" in body["detail"]
    assert_nothing_kept(api, dataset)


def _lie_about_size(data: bytes, size: int) -> bytes:
    """The zip with its one entry's uncompressed size set to ``size`` in both headers."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    out[local + 22 : local + 26] = struct.pack("<I", size)
    central = out.index(b"PK\x01\x02")
    out[central + 24 : central + 28] = struct.pack("<I", size)
    return bytes(out)


def test_a_zip_whose_declared_size_lies_stops_unpacking_at_the_limit(api_factory: object) -> None:
    api: Api = api_factory(compression_ratio_floor_bytes=MIB)  # type: ignore[operator]
    dataset = new_dataset(api)
    honest = zip_of_zeros({"liar.png": 64 * MIB})
    lying = _lie_about_size(honest, 1000)  # 1000 bytes: passes every check on the directory
    with zipfile.ZipFile(io.BytesIO(lying)) as zf:
        assert zf.infolist()[0].file_size == 1000
    started = time.perf_counter()
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "liar.zip", lying)
    elapsed = time.perf_counter() - started
    assert response.status_code in (413, 422), response.text
    body = response.json()
    assert body["code"] in ("compression_ratio", "bad_zip") and "liar.zip" in body["file"]
    assert elapsed < 2.0, elapsed
    assert_nothing_kept(api, dataset)


def test_unpacking_stops_at_an_entrys_allowance_whatever_it_declared(tmp_path: Path) -> None:
    """CPython's zipfile stops at the declared size (then fails the CRC, as above); the
    receiver's own count stops an entry at what its compressed size allows, on any stream.
    """
    limits = Limits(max_files=10, max_bytes=64 * MIB, max_ratio=2.0, ratio_floor=MIB)
    receiver = Receiver(tmp_path / "files", limits)
    receiver.budget.take_file("a.zip:a.png")
    stream = io.BytesIO(bytes(3 * MIB))
    with pytest.raises(TooLarge) as refusal:
        receiver._write(stream, "a.png", "a.zip:a.png", 1, limits.expansion(1000))
    assert refusal.value.code == "compression_ratio" and refusal.value.file == "a.zip:a.png"
    assert "unpacks to more than 1048576 bytes" in refusal.value.detail
    assert stream.tell() <= 2 * MIB  # it stopped reading near the allowance, not at the end


def pixel_bomb(side: int = 13_000) -> bytes:
    """A PNG of ``side`` x ``side`` pixels that is a few KB: a 1-bit all-zero image."""
    buffer = io.BytesIO()
    Image.new("1", (side, side), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_a_small_png_of_13000_squared_pixels_is_refused_by_its_header(api: Api) -> None:
    data = pixel_bomb()
    assert len(data) < 100_000, len(data)
    dataset = new_dataset(api)
    started = time.perf_counter()
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "huge.png", data)
    elapsed = time.perf_counter() - started
    body = refused(response, 413, "image_too_large")
    assert body["file"] == "huge.png" and body["detail"].startswith("huge.png: ")
    assert "13000 x 13000 = 169000000 pixels" in body["detail"]
    assert elapsed < 2.0, elapsed  # decoding and checking it took the API to 940 MB
    assert_nothing_kept(api, dataset)


def test_an_image_just_over_the_setting_is_refused_in_a_zip_naming_the_entry(
    api_factory: object,
) -> None:
    api: Api = api_factory(max_image_pixels=100 * 100)  # type: ignore[operator]
    dataset = new_dataset(api)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, side in (("ok.png", 100), ("big/wide.png", 101)):
            png = io.BytesIO()
            Image.fromarray(np.zeros((side, side), np.uint8)).save(png, "PNG")
            zf.writestr(name, png.getvalue())
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "scans.zip", buffer.getvalue())
    body = refused(response, 413, "image_too_large")
    assert body["file"] == "scans.zip:big/wide.png"
    assert "101 x 101 = 10201 pixels, more than the limit of 10000" in body["detail"]
    assert "SEGAUDIT_MAX_IMAGE_PIXELS" in body["detail"]
    assert_nothing_kept(api, dataset)


def _volume_header_only(path: Path, shape: tuple[int, int, int]) -> Path:
    """A NIfTI file that declares ``shape`` but holds a header only (a few hundred bytes)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    return path


def test_a_volume_declaring_too_many_voxels_is_refused_by_its_header(
    api: Api, tmp_path: Path
) -> None:
    dataset = new_dataset(api)
    path = _volume_header_only(tmp_path / "ct.nii.gz", (2048, 2048, 2048))
    response = api.upload(f"/v1/datasets/{dataset}/images", [path])
    body = refused(response, 413, "image_too_large")
    assert body["file"] == "ct.nii.gz" and "2048 x 2048 x 2048" in body["detail"]
    assert "SEGAUDIT_MAX_IMAGE_VOXELS" in body["detail"]
    assert_nothing_kept(api, dataset)


def test_masks_are_refused_by_their_header_too(api: Api) -> None:
    dataset = new_dataset(api)
    aset = api.post(f"/v1/datasets/{dataset}/annotation-sets", json={"name": "a"}).json()["id"]
    url = f"/v1/datasets/{dataset}/annotation-sets/{aset}/masks"
    body = refused(api.upload_bytes(url, "huge.png", pixel_bomb()), 413, "image_too_large")
    assert body["file"] == "huge.png"
    assert stored_files(api.store) == []


def test_a_detached_nrrd_header_cannot_read_a_server_file(api: Api) -> None:
    dataset = new_dataset(api)
    header = (
        b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 8 8 8\nendian: little\nencoding: raw\n"
        b"data file: /etc/passwd\n\n"
    )
    response = api.upload_bytes(f"/v1/datasets/{dataset}/images", "v.nrrd", header)
    body = refused(response, 422, "unreadable_file")
    assert body["file"] == "v.nrrd" and "detached" in body["detail"]
    assert_nothing_kept(api, dataset)


UNREADABLE = {
    "x.png": b"\x89PNG\r\n\x1a\nnot a png",
    "y.tif": b"II*\x00junk",
    "z.nii.gz": gzip.compress(b"junk" * 100),
    "w.nii": bytes(400),
    "v.nrrd": b"NRRD0004\nnot a header\n\n",
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_refusals_carry_no_server_path(api: Api, name: str) -> None:
    dataset = new_dataset(api)
    for upload in (name, "export.zip"):
        data = UNREADABLE[name]
        if upload == "export.zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as zf:
                zf.writestr(f"pat/{name}", data)
            data = buffer.getvalue()
        response = api.upload_bytes(f"/v1/datasets/{dataset}/images", upload, data)
        body = refused(response, 422, "unreadable_file")
        shown = name if upload == name else f"export.zip:pat/{name}"
        assert body["file"] == shown and name in body["detail"], body
        assert str(api.settings.data_dir) not in response.text
        assert ABSOLUTE.search(response.text) is None, response.text
    assert_nothing_kept(api, dataset)


def test_storage_paths_are_cut_from_any_refusal() -> None:
    from app.api.errors import without_server_paths

    storage = Path("/srv/segaudit/storage")
    text = f"cannot identify image file '{storage}/tmp/ab12/files/x.png'"
    assert without_server_paths(text, storage) == "cannot identify image file 'x.png'"


def test_a_dicom_series_over_the_voxel_limit_is_refused_by_its_headers(
    api_factory: object, built: Any, tmp_path: Path
) -> None:
    """A PACS export whose series holds more voxels than the limit (here lowered under one of
    the MR slabs): refused by Rows x Columns x slices before any pixel data is decoded; a
    limit it fits accepts the same export.
    """
    case = built[0]
    rows, columns = int(case.images[0].Rows), int(case.images[0].Columns)
    voxels = rows * columns * len(case.images)
    export = {"export.zip": export_zip(tmp_path, [case])}
    small: Api = api_factory(max_image_voxels=voxels - 1)  # type: ignore[operator]
    dataset = new_dataset(small)
    response = post_files(small, f"/v1/datasets/{dataset}/images", export)
    body = refused(response, 413, "image_too_large")
    assert body["file"].startswith("export.zip:") and f"{voxels} voxels" in body["detail"]
    assert "SEGAUDIT_MAX_IMAGE_VOXELS" in body["detail"]
    assert_nothing_kept(small, dataset)
    fits: Api = api_factory(max_image_voxels=voxels)  # type: ignore[operator]
    dataset = fits.post("/v1/datasets", json={"name": "fits"}).json()["id"]
    assert post_files(fits, f"/v1/datasets/{dataset}/images", export).status_code == 201


def test_a_dicom_frame_over_the_pixel_limit_is_refused(
    api_factory: object, built: Any, tmp_path: Path
) -> None:
    case = built[0]
    rows, columns = int(case.images[0].Rows), int(case.images[0].Columns)
    small: Api = api_factory(max_image_pixels=rows * columns - 1)  # type: ignore[operator]
    dataset = new_dataset(small)
    response = post_files(
        small, f"/v1/datasets/{dataset}/images", {"export.zip": export_zip(tmp_path, [case])}
    )
    body = refused(response, 413, "image_too_large")
    assert f"a frame of {rows} x {columns}" in body["detail"]
    assert_nothing_kept(small, dataset)
