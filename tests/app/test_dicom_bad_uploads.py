"""Every malformed DICOM upload: a 4xx that names the file and why, and nothing left behind."""

from __future__ import annotations

import copy
import io
import shutil
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from tests.app.dicom_data import (
    assert_unchanged,
    export_zip,
    masks_url,
    new_dataset,
    new_set,
    post_files,
    snapshot,
)
from tests.imaging.dicom.builders import TISSUE, TUMOUR, pacs_export, rtstruct_for, save, segment


def dcm(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def edited_export(tmp_path: Path, cases, edit) -> bytes:
    """A PACS export zip of ``cases`` after ``edit(folder)`` changed its files."""
    folder = pacs_export(tmp_path, cases, as_zip=False)
    edit(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(tmp_path))
    shutil.rmtree(folder)
    return buffer.getvalue()


def truncated_header(built, tmp_path):
    def cut(folder):
        victim = folder / "BRAIN1" / "STUDY1" / "SER002" / "IM00001"
        victim.write_bytes(victim.read_bytes()[:600])

    return {"export.zip": edited_export(tmp_path, built[:3], cut)}


def truncated_pixels(built, tmp_path):
    def cut(folder):
        victim = folder / "BRAIN1" / "STUDY1" / "SER001" / "IM00002"
        victim.write_bytes(victim.read_bytes()[:-3000])

    return {"export.zip": edited_export(tmp_path, built[:3], cut)}


def mixed_series(built, tmp_path):
    brain, breast = built[2], built[7]
    intruder = copy.deepcopy(breast.images[0])  # a breast slice in a brain series
    for name in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        setattr(intruder, name, getattr(brain.images[0], name))
    intruder.SOPInstanceUID = intruder.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())

    def add(folder):
        save(intruder, folder / "BRAIN1" / "STUDY1" / "SER003" / "IM99999")

    return {"export.zip": edited_export(tmp_path, [brain, breast], add)}


def only_segs(built, tmp_path):
    return {f"seg{i}.dcm": dcm(c.mask) for i, c in enumerate(built[:2])}


IMAGE_REFUSALS = [
    (
        truncated_header,
        "unreadable_file",
        "export.zip:EXPORT/<patient>/STUDY1/SER002/IM00001",  # the folder named after him
        "export.zip:EXPORT/<patient>/STUDY1/SER002/IM00001 is a MR Image Storage object without "
        "rows and columns: the file is truncated",
    ),
    (
        truncated_pixels,
        "unreadable_file",
        "export.zip:EXPORT/<patient>/STUDY1/SER001/IM00002",
        "pixel data",
    ),
    (mixed_series, "series_inconsistent", "export.zip", "mixes images of 120x45 and 256x256"),
    (only_segs, "empty_folder", None, "holds no DICOM image series"),
]


@pytest.mark.filterwarnings("ignore:End of file reached")
@pytest.mark.parametrize(
    ("make", "code", "file", "fragment"),
    IMAGE_REFUSALS,
    ids=[r[0].__name__ for r in IMAGE_REFUSALS],
)
def test_refused_pacs_exports(api, built, tmp_path, make, code, file, fragment):
    dataset_id = new_dataset(api)
    before = snapshot(api)
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", make(built, tmp_path))
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["code"], body.get("file")) == (code, file), body
    assert fragment in body["detail"]
    assert str(api.store.root) not in body["detail"]  # no server path in a message
    assert_unchanged(api, before)


def test_two_series_of_one_pseudonym_are_refused(api, built, tmp_path, monkeypatch):
    # Two series whose UIDs hash alike (one chance in 2^64 a pair): only a forced clash shows it.
    monkeypatch.setattr("app.services.dicom.case_names", lambda s: {s[0].series_uid: "clash"})
    dataset_id = new_dataset(api)
    before = snapshot(api)
    export = {"export.zip": export_zip(tmp_path, built[:2])}
    response = post_files(api, f"/v1/datasets/{dataset_id}/images", export)
    assert response.status_code == 422 and response.json()["code"] == "duplicate_case"
    assert "would both be case 'clash'" in response.json()["detail"]
    assert_unchanged(api, before)


def test_dicom_and_image_files_do_not_mix_in_a_dataset(api, built, hc18, tmp_path):
    images, masks = hc18
    pngs = new_dataset(api, "pngs")
    assert api.upload(f"/v1/datasets/{pngs}/images", images[:1]).status_code == 201
    before = snapshot(api)
    export = {"export.zip": export_zip(tmp_path, built[:1])}
    dicom_in_png = post_files(api, f"/v1/datasets/{pngs}/images", export)
    assert dicom_in_png.status_code == 422 and dicom_in_png.json()["code"] == "unsupported_format"
    png_set = new_set(api, pngs)
    before = snapshot(api)
    seg_in_png = post_files(api, masks_url(pngs, png_set), {"seg.dcm": dcm(built[0].mask)})
    assert seg_in_png.status_code == 422 and seg_in_png.json()["code"] == "unsupported_format"
    assert_unchanged(api, before)

    series = new_dataset(api, "series")
    assert post_files(api, f"/v1/datasets/{series}/images", export).status_code == 201
    before = snapshot(api)
    png_in_dicom = api.upload(f"/v1/datasets/{series}/images", images[:1])
    assert png_in_dicom.status_code == 422 and png_in_dicom.json()["code"] == "unsupported_format"
    assert png_in_dicom.json()["file"] == images[0].name
    series_set = new_set(api, series)
    before = snapshot(api)
    nifti = {f"{built[0].name}.nii.gz": b"\x1f\x8b not read"}
    mask_in_dicom = post_files(api, masks_url(series, series_set), nifti)
    assert mask_in_dicom.status_code == 422 and mask_in_dicom.json()["code"] == "unsupported_format"
    assert "SEG or RTSTRUCT" in mask_in_dicom.json()["detail"]
    assert_unchanged(api, before)


# Masks, for a dataset of three brain series.


@pytest.fixture
def brain(api, built, tmp_path):
    dataset_id = new_dataset(api)
    export = {"export.zip": export_zip(tmp_path, built[:3])}
    assert post_files(api, f"/v1/datasets/{dataset_id}/images", export).status_code == 201
    return dataset_id, new_set(api, dataset_id)


def seg_of_a_missing_series(built, tmp_path):
    return {"seg.dcm": dcm(built[3].mask)}  # BRAIN1 series 4: not in the dataset


def seg_off_the_grid(built, tmp_path):
    mask = copy.deepcopy(built[1].mask)
    for frame in mask.PerFrameFunctionalGroupsSequence:
        position = frame.PlanePositionSequence[0]
        x, y, z = (float(v) for v in position.ImagePositionPatient)
        position.ImagePositionPatient = [x + 1.5, y + 1.5, z]  # 2.12 mm aside, in its plane
    return {"seg.dcm": dcm(mask)}


def overlapping_segments(built, tmp_path):
    case = built[2]
    tumour = case.labels.astype(bool)
    grown = tumour | np.roll(tumour, 2, axis=0)
    stacked = np.stack([tumour, grown], axis=-1).transpose(2, 1, 0, 3).astype(np.uint8)
    mask = hd.seg.Segmentation(
        source_images=case.images,
        pixel_array=stacked,
        segmentation_type="BINARY",
        segment_descriptions=[segment(1, TUMOUR), segment(2, TISSUE)],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="x",
        manufacturer_model_name="x",
        software_versions="1",
        device_serial_number="1",
    )
    return {"overlap.dcm": dcm(mask)}


def two_segs_of_one_series(built, tmp_path):
    second = copy.deepcopy(built[0].mask)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())
    return {"a.dcm": dcm(built[0].mask), "b.dcm": dcm(second)}


def seg_and_rtstruct(built, tmp_path):
    case = built[1]
    structure = rtstruct_for(case.images, case.labels, case.affine, ("GTV",))
    return {"seg.dcm": dcm(built[0].mask), "rs.dcm": dcm(structure)}


def images_only(built, tmp_path):
    return {"series.zip": _series_zip(built[0])}


def _series_zip(case) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for index, ds in enumerate(case.images):
            zf.writestr(f"S1/IM{index}", dcm(ds))
    return buffer.getvalue()


MASK_REFUSALS = [
    (seg_of_a_missing_series, "missing_image", "seg.dcm", "which dataset"),
    (seg_off_the_grid, "geometry_mismatch", "seg.dcm", "2.12 mm from the nearest slice"),
    (overlapping_segments, "segments_overlap", "overlap.dcm", "'Tumour' and 2 'Tissue'"),
    (two_segs_of_one_series, "duplicate_case", "b.dcm", "two masks reference series 1"),
    (seg_and_rtstruct, "unsupported_format", None, "mixes SEG and RTSTRUCT"),
    (images_only, "empty_folder", None, "holds no DICOM SEG or RTSTRUCT"),
]


@pytest.mark.parametrize(
    ("make", "code", "file", "fragment"), MASK_REFUSALS, ids=[r[0].__name__ for r in MASK_REFUSALS]
)
def test_refused_masks(api, built, brain, tmp_path, make, code, file, fragment):
    dataset_id, set_id = brain
    before = snapshot(api)
    response = post_files(api, masks_url(dataset_id, set_id), make(built, tmp_path))
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["code"], body.get("file")) == (code, file), body
    assert fragment in body["detail"]
    assert str(api.store.root) not in body["detail"]
    assert_unchanged(api, before)


def test_one_kind_of_mask_per_annotation_set(api, built, brain):
    dataset_id, set_id = brain
    first = post_files(api, masks_url(dataset_id, set_id), {"seg.dcm": dcm(built[0].mask)})
    assert first.status_code == 201, first.text
    before = snapshot(api)
    case = built[1]
    structure = rtstruct_for(case.images, case.labels, case.affine, ("GTV",))
    response = post_files(api, masks_url(dataset_id, set_id), {"rs.dcm": dcm(structure)})
    assert response.status_code == 422 and response.json()["code"] == "unsupported_format"
    assert response.json()["file"] == "rs.dcm" and "holds SEG masks" in response.json()["detail"]
    assert_unchanged(api, before)
