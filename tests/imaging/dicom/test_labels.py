"""Case names from UIDs alone, patient labels read once, and identifiers scrubbed from text."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from pydicom.dataset import Dataset

from imaging.dicom import cases as dicom_cases
from imaging.dicom.labels import identifiers_of, labels_of, pseudonym, scrub


def _header(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_a_pseudonym_is_two_hashes_of_uids():
    study, series = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    name = pseudonym(study, series)
    digest = [hashlib.sha256(u.encode()).hexdigest() for u in (study, series)]
    assert name == f"{digest[0][:8]}-{digest[1][:8]}" == pseudonym(study, series)
    assert pseudonym(study, series + "1") != name and pseudonym(study, series, digits=16) != name


def test_case_names_lengthen_only_a_name_two_series_share(monkeypatch):
    series = [SimpleNamespace(study_uid="1.2", series_uid=f"1.2.{n}") for n in range(3)]
    real = dicom_cases.pseudonym

    def clashing(study: str, uid: str, *, digits: int = 8) -> str:
        return "clash" if digits == 8 and uid != "1.2.2" else real(study, uid, digits=digits)

    monkeypatch.setattr(dicom_cases, "pseudonym", clashing)
    names = dicom_cases.case_names(series)  # type: ignore[arg-type]
    assert names["1.2.0"] == real("1.2", "1.2.0", digits=32)
    assert names["1.2.1"] == real("1.2", "1.2.1", digits=32)
    assert names["1.2.2"] == real("1.2", "1.2.2") and len(set(names.values())) == 3


def test_labels_are_read_and_empty_ones_left_out():
    header = _header(
        PatientID="PHI12345",
        PatientName="Zyxwvut^Quorbl",
        PatientBirthDate="19311231",
        StudyDate="20240131",
        SeriesNumber="2",
        SeriesDescription="",
        StudyInstanceUID="1.2.3",
    )
    assert labels_of(header) == {
        "patient_id": "PHI12345",
        "patient_name": "Zyxwvut^Quorbl",
        "patient_birth_date": "19311231",
        "study_date": "20240131",
        "series_number": "2",
        "study_uid": "1.2.3",
    }


def test_identifiers_are_scrubbed_from_text_in_any_case():
    headers = [
        _header(
            PatientID="PHI12345", PatientName="Zyxwvut^Quorbl^^Dr", PatientBirthDate="19311231"
        ),
        _header(PatientID="X9", OtherPatientIDs=["ALT-77", "ALT-78"]),
    ]
    found = identifiers_of(headers)
    assert {"PHI12345", "Zyxwvut", "Quorbl", "19311231", "X9", "ALT-77", "ALT-78"} <= found
    assert "Dr" not in found  # too short a part to scrub everywhere
    text = "export.zip:EXPORT/ZYXWVUT_quorbl_PHI12345/19311231/IM1 and alt-78"
    assert scrub(text, found) == (
        "export.zip:EXPORT/<patient>_<patient>_<patient>/<patient>/IM1 and <patient>"
    )
    assert scrub("nothing here", set()) == "nothing here"
