"""PACS exports and SEG / RTSTRUCT masks uploaded over HTTP: one case per series with its
geometry, masks matched by the series they reference, and the upload limits applied to every
zip, nested ones included, before ``imaging.dicom`` sees anything.
"""

from __future__ import annotations

import copy
import io
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from sqlalchemy import select

from app.db.tables import Case
from imaging.dicom.cases import find_pairs
from tests.app.dicom_data import (
    assert_unchanged,
    case_name,
    export_zip,
    masks_url,
    new_dataset,
    new_set,
    post_files,
    snapshot,
    zipped,
)
from tests.imaging.dicom.builders import pacs_export, rtstruct_for


def test_a_pacs_export_becomes_one_case_per_series(api, _built, tmp_path):
    archive = pacs_export(tmp_path / "export", _built)
    dataset_id = new_dataset(api)
    response = api.upload(f"/v1/datasets/{dataset_id}/images", [archive])
    assert response.status_code == 201, response.text
    body = response.json()
    engine = {p.case_id: p.series for p in find_pairs(archive, archive)[0]}
    assert {c["name"] for c in body["cases"]} == {case_name(c) for c in _built} == set(engine)
    for case in body["cases"]:  # the geometry the engine reads from the series
        series = engine[case["name"]]
        assert case["shape"] == list(series.shape) and case["channels"] == 1
        assert np.allclose(case["spacing"], series.spacing)
        assert case["image"]["format"] == "dicom-series"
        assert case["image"]["name"] == f"{case['name']}.zip"
    notes = " | ".join(body["notes"])
    assert "README.TXT" in notes and "SR (not an image)" in notes and "9 objects" in notes
    with api.sessions() as session:
        affines = dict(session.execute(select(Case.name, Case.affine)).all())
    assert all(np.allclose(affines[n], s.affine) for n, s in engine.items())

    # The series' instances are stored as received, in one blob per series.
    first = _built[0]
    blob = next(c for c in body["cases"] if c["name"] == case_name(first))["image"]["sha256"]
    with zipfile.ZipFile(api.store.path(blob)) as zf:
        names = sorted(zf.namelist())
        stored = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in names]
    series_uid = first.images[0].SeriesInstanceUID
    assert names == sorted(f"{series_uid}/{ds.SOPInstanceUID}.dcm" for ds in first.images)
    assert {ds.SOPInstanceUID for ds in stored} == {ds.SOPInstanceUID for ds in first.images}

    # Content-addressed: the same export in another dataset is the same blobs.
    other = new_dataset(api, "again")
    again = api.upload(f"/v1/datasets/{other}/images", [archive]).json()
    assert {c["image"]["sha256"] for c in again["cases"]} == {
        c["image"]["sha256"] for c in body["cases"]
    }
    # Cases are never replaced.
    before = snapshot(api)
    twice = api.upload(f"/v1/datasets/{dataset_id}/images", [archive])
    assert twice.status_code == 409 and twice.json()["code"] == "case_exists"
    assert "(this series)" in twice.json()["detail"]
    assert_unchanged(api, before)


def test_the_export_itself_uploads_as_the_masks(api, _built, tmp_path):
    archive = pacs_export(tmp_path / "export", _built)
    dataset_id = new_dataset(api)
    cases = api.upload(f"/v1/datasets/{dataset_id}/images", [archive]).json()["cases"]
    set_id = new_set(api, dataset_id)
    response = api.upload(masks_url(dataset_id, set_id), [archive])
    assert response.status_code == 201, response.text
    body = response.json()
    case_ids = {c["name"]: c["id"] for c in cases}
    assert {m["case"]: m["case_id"] for m in body["masks"]} == case_ids
    assert {m["file"]["format"] for m in body["masks"]} == {"dicom-seg"}
    assert {m["case"]: m["max_label"] for m in body["masks"]} == {
        case_name(c): int(c.labels.max())
        for c in _built  # some slabs hold no tumour
    }
    assert any("not SEG or RTSTRUCT" in n for n in body["notes"])
    listed = api.get(f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}").json()
    assert listed["masks"] == 9
    before = snapshot(api)
    again = api.upload(masks_url(dataset_id, set_id), [archive])
    assert again.status_code == 409 and again.json()["code"] == "mask_exists"
    assert_unchanged(api, before)


def test_nested_zips_a_dicomdir_and_plain_seg_files(api, built, tmp_path):
    cases = built[:3]
    fileset = FileSet()
    for case in cases:
        for ds in case.images:
            fileset.add(copy.deepcopy(ds))
    fileset.write(tmp_path / "cd")  # PT000000/ST000000/SE00000n/IM00000n and a DICOMDIR
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for path in sorted((tmp_path / "cd").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(tmp_path))
    outer = zipped({"disc/cd.zip": inner.getvalue(), "disc/INDEX.HTM": b"<html></html>"})
    dataset_id = new_dataset(api)
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", {"disc.zip": outer})
    assert response.status_code == 201, response.text
    body = response.json()
    assert sorted(c["name"] for c in body["cases"]) == sorted(case_name(c) for c in cases)
    assert any("DICOMDIR" in n for n in body["notes"])
    assert any("INDEX.HTM" in n for n in body["notes"])

    set_id = new_set(api, dataset_id)
    segs = {}
    for index, case in enumerate(cases):
        buffer = io.BytesIO()
        case.mask.save_as(buffer, enforce_file_format=True)
        segs[f"seg{index}.dcm"] = buffer.getvalue()
    masks = post_files(api, masks_url(dataset_id, set_id), segs)
    assert masks.status_code == 201, masks.text
    assert sorted(m["case"] for m in masks.json()["masks"]) == sorted(case_name(c) for c in cases)


def test_rtstruct_masks(api, built, tmp_path):
    cases = list(built[:3])
    dataset_id = new_dataset(api)
    images = api.upload_bytes(
        f"/v1/datasets/{dataset_id}/images", "export.zip", export_zip(tmp_path, cases)
    )
    assert images.status_code == 201, images.text
    structures = {}
    for index, case in enumerate(cases):
        ds = rtstruct_for(case.images, case.labels, case.affine, ("GTV",))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        structures[f"rs{index}.dcm"] = buffer.getvalue()
    set_id = new_set(api, dataset_id)
    masks = post_files(api, masks_url(dataset_id, set_id), structures)
    assert masks.status_code == 201, masks.text
    assert {m["file"]["format"] for m in masks.json()["masks"]} == {"dicom-rtstruct"}
    assert {m["file"]["name"] for m in masks.json()["masks"]} == {
        f"{case_name(c)}.dcm" for c in cases
    }


# The limits hold for every zip, nested ones too, before imaging.dicom reads a byte.


@pytest.fixture
def no_engine(monkeypatch):
    """models.dicom must not be reached: the refusal comes first."""

    def reached(*args, **kwargs):
        raise AssertionError("models.dicom was handed an upload over the limits")

    monkeypatch.setattr("app.services.dicom.scan", reached)


def nested(levels: int, entries: dict[str, bytes]) -> bytes:
    data = zipped(entries)
    for level in range(levels - 1):
        data = zipped({f"level{level}.zip": data})
    return data


def dcm_bytes(case) -> bytes:
    buffer = io.BytesIO()
    case.images[0].save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_nested_zip_over_the_byte_limit(api_factory, built, no_engine):
    api = api_factory(max_uncompressed_bytes=4 * 1024 * 1024)
    dataset_id = new_dataset(api)
    before = snapshot(api)
    bomb = nested(3, {"IM1": b"\x00" * (12 * 1024 * 1024)})
    data = zipped({"a/IM0": dcm_bytes(built[0]), "a/more.zip": bomb})
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", {"export.zip": data})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "upload_too_large"
    assert response.json()["file"] == "export.zip:a/more.zip:level1.zip:level0.zip"
    assert_unchanged(api, before)


def test_a_nested_zip_over_the_file_count(api_factory, built, no_engine):
    api = api_factory(max_files=10)
    dataset_id = new_dataset(api)
    before = snapshot(api)
    many = zipped({f"IM{i}": b"x" for i in range(12)})
    data = zipped({"IM0.dcm": dcm_bytes(built[0]), "inner.zip": many})
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", {"export.zip": data})
    assert response.status_code == 413 and response.json()["code"] == "too_many_files"
    assert response.json()["file"] == "export.zip:inner.zip"
    assert_unchanged(api, before)


def test_zips_nested_too_deep(api, built, no_engine):
    dataset_id = new_dataset(api)
    before = snapshot(api)
    data = nested(6, {"IM0.dcm": dcm_bytes(built[0])})
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", {"deep.zip": data})
    assert response.status_code == 422 and response.json()["code"] == "bad_zip"
    assert "nested more than 4 deep" in response.json()["detail"]
    assert_unchanged(api, before)
