"""DICOM cases are named by a pseudonym of their UIDs, the same in every upload, and their
patient labels are shown to reviewers and admins only; refusals carry no patient identifier.
"""

from __future__ import annotations

import copy
import io

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from app.db.tables import Case
from imaging.dicom.labels import pseudonym
from tests.app.conftest import Api
from tests.app.dicom_data import (
    PATIENTS,
    assert_unchanged,
    export_zip,
    leaks,
    masks_url,
    new_dataset,
    new_set,
    post_files,
    snapshot,
    with_patients,
    zipped,
)
from tests.imaging.dicom.builders import BuiltCase


@pytest.fixture
def cases(built: list[BuiltCase]) -> list[BuiltCase]:
    """Two brain and two breast series, of two patients with distinctive identifiers."""
    return with_patients([built[0], built[1], built[5], built[6]])


def _dcm(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _upload(api: Api, dataset_id: int, archive: bytes, role: str = "annotator") -> dict:
    parts = [("files", ("export.zip", archive, "application/zip"))]
    response = api.client.post(
        f"/v1/datasets/{dataset_id}/images", headers=api.headers[role], files=parts
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_the_pseudonym_is_stable_across_uploads_and_says_nothing_of_the_patient(
    api, cases, tmp_path
):
    archive = export_zip(tmp_path, cases)
    first = _upload(api, new_dataset(api, "first"), archive)
    again = _upload(api, new_dataset(api, "again"), export_zip(tmp_path, cases[::-1]))
    names = sorted(c["name"] for c in first["cases"])
    assert names == sorted(c["name"] for c in again["cases"])
    expected = {
        pseudonym(str(c.images[0].StudyInstanceUID), str(c.images[0].SeriesInstanceUID))
        for c in cases
    }
    assert set(names) == expected and len(names) == len(cases)
    for case in cases:  # the series of one study share the name's first part
        assert case.name.split("-")[0] == pseudonym(str(case.images[0].StudyInstanceUID), "")[:8]
    assert not leaks(" ".join(names))
    assert not leaks(str(first["notes"])), first["notes"]  # of files the client named, too


def test_patient_labels_are_shown_to_reviewers_and_admins_only(api, cases, tmp_path):
    dataset_id = new_dataset(api)
    uploaded = _upload(api, dataset_id, export_zip(tmp_path, cases))
    assert all(c["patient_labels"] is None for c in uploaded["cases"])  # an annotator's upload
    url = f"/v1/datasets/{dataset_id}/cases"
    for role in ("viewer", "annotator"):
        items = api.get(url, role=role).json()["items"]
        assert len(items) == len(cases) and all(c["patient_labels"] is None for c in items)
        assert not leaks(str(items)), role
    by_name = {c.name: c for c in cases}
    for role in ("reviewer", "admin"):
        items = api.get(url, role=role).json()["items"]
        for item in items:
            case = by_name[item["name"]]
            labels = item["patient_labels"]
            patient_id, name, born = PATIENTS[
                "BRAIN1" if "PHI12345" in case.patient_id else "BREAST1"
            ]
            assert labels["patient_id"] == patient_id and labels["patient_name"] == name
            assert labels["patient_birth_date"] == born
            assert labels["series_number"] == str(case.series_number)
            assert labels["series_uid"] == case.images[0].SeriesInstanceUID
            assert labels["study_uid"] == case.images[0].StudyInstanceUID
    assert api.get(url, role="other").status_code == 404  # another project's key sees nothing
    # A reviewer uploading sees the labels of what they uploaded.
    more = _upload(api, new_dataset(api, "reviewed"), export_zip(tmp_path, cases[:1]), "reviewer")
    assert more["cases"][0]["patient_labels"]["patient_name"] == "Zyxwvut^Quorbl"
    with api.sessions() as session:  # kept on every DICOM case
        assert all(session.scalars(select(Case.dicom_labels)))


def test_image_files_have_no_patient_labels(api, hc18):
    images, _ = hc18
    dataset_id = new_dataset(api)
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images[:2]).status_code == 201
    items = api.get(f"/v1/datasets/{dataset_id}/cases", role="admin").json()["items"]
    assert [c["patient_labels"] for c in items] == [None, None]


def test_refusals_of_dicom_uploads_carry_no_patient_identifier(api, cases, built, tmp_path):
    dataset_id = new_dataset(api)
    archive = export_zip(tmp_path, cases)
    _upload(api, dataset_id, archive)
    before = snapshot(api)
    refused = []
    again = post_files(api, f"/v1/datasets/{dataset_id}/images", {"export.zip": archive})
    assert again.status_code == 409 and again.json()["code"] == "case_exists"
    refused.append(again)
    # A series with a slice of another size: refused, naming the file by the client's path.
    odd = copy.deepcopy(cases[:1])
    odd[0].images[1].Rows = 10
    odd[0].images[1].PixelData = b"\0" * (10 * int(odd[0].images[1].Columns) * 2)
    bad = post_files(api, f"/v1/datasets/{dataset_id}/images", {"x.zip": export_zip(tmp_path, odd)})
    assert bad.status_code == 422, bad.text
    refused.append(bad)
    # A SEG of a series the dataset does not hold, in a folder named after the patient.
    set_id = new_set(api, dataset_id)
    other = with_patients([built[2]])[0]
    folder = f"EXPORT/{other.patient_id}/SEG/seg.dcm"
    missing = post_files(
        api, masks_url(dataset_id, set_id), {"export.zip": zipped({folder: _dcm(other.mask)})}
    )
    assert missing.status_code == 422 and missing.json()["code"] == "missing_image"
    shown = "export.zip:EXPORT/<patient>_<patient>_<patient>/SEG/seg.dcm"
    assert missing.json()["file"] == shown
    refused.append(missing)
    assert_unchanged(api, before)
    for response in refused:
        assert not leaks(response.text), response.text
