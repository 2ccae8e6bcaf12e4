"""What a DICOM series says about its patient, kept apart from the case's name.

A case's name is a pseudonym made from UIDs alone (``pseudonym``): it goes into URLs, file
names, logs and error messages. The patient-facing labels (Patient ID and Name, birth date,
study date, accession number, descriptions) are read here once, for the service to keep beside
the case and show only to the roles that may see them; nothing else in segaudit reads them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

PSEUDONYM_DIGITS = 8  # hex digits per UID: 32 bits each, 64 for a name

# DICOM keyword -> label name, in the order shown.
LABELS = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
    "SeriesDate": "series_date",
    "SeriesDescription": "series_description",
    "SeriesNumber": "series_number",
    "Modality": "modality",
    "StudyInstanceUID": "study_uid",
    "SeriesInstanceUID": "series_uid",
}


def _digest(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()


def pseudonym(study_uid: str, series_uid: str, *, digits: int = PSEUDONYM_DIGITS) -> str:
    """A case name that says nothing about the patient: ``<study>-<series>``, the first
    ``digits`` hex digits of the SHA-256 of each UID. The same series gets the same name in
    every upload and every audit; the series of one study share the first part.
    """
    return f"{_digest(study_uid)[:digits]}-{_digest(series_uid)[:digits]}"


def labels_of(header: Dataset) -> dict[str, str]:
    """The patient-facing labels of a series (one instance's header); absent or empty ones are
    left out. Person names are given as DICOM writes them (``Family^Given``).
    """
    found = {}
    for keyword, name in LABELS.items():
        value = header.get(keyword)
        text = "" if value is None else str(value).strip()
        if text:
            found[name] = text
    return found


# The labels that identify the patient: kept out of names shown in messages (``scrub``).
IDENTIFYING = ("PatientID", "PatientName", "PatientBirthDate", "OtherPatientIDs")
SCRUBBED = "<patient>"
_MIN_PART = 3  # shorter parts of a person's name ("Li", initials) are too common to scrub


def identifiers_of(headers: Iterable[Dataset]) -> set[str]:
    """The values in ``headers`` that identify a patient, with each part of a person's name
    (``Family^Given``) of ``_MIN_PART`` characters or more: what ``scrub`` takes out.
    """
    found: set[str] = set()
    for header in headers:
        for keyword in IDENTIFYING:
            value = header.get(keyword)
            values = value if isinstance(value, MultiValue) else [value]
            for text in (str(v).strip() for v in values if v is not None):
                if text:
                    found.add(text)
                if keyword == "PatientName":
                    found.update(p for p in re.split(r"[\^=\s]+", text) if len(p) >= _MIN_PART)
    return found


def scrub(text: str, identifiers: Iterable[str]) -> str:
    """``text`` with every identifier replaced by ``<patient>``, longest first and in any case:
    a PACS export names its folders after the patient, and the names the client gave its files
    go into messages.
    """
    for value in sorted(set(identifiers), key=len, reverse=True):
        text = re.sub(re.escape(value), SCRUBBED, text, flags=re.IGNORECASE)
    return text
