"""DICOM data for the service's tests: PACS-style exports of the engine tests' MR series (nine
slabs of two real MR volumes, one series and one SEG each; ``tests/models/dicom/builders.py``).
"""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.db.tables import Case, Mask, StoredFile
from tests.app.conftest import Api
from tests.imaging.dicom.builders import BuiltCase, pacs_export


def case_name(case: BuiltCase) -> str:
    return case.name


def export_zip(tmp_path: Path, cases: list[BuiltCase]) -> bytes:
    """A PACS export of ``cases`` as a zip: nested folders, files named without extensions,
    the SEGs in a folder of their own, a README and an SR document.
    """
    return pacs_export(tmp_path / uuid.uuid4().hex, cases).read_bytes()


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def new_dataset(api: Api, name: str = "pacs") -> int:
    response = api.post("/v1/datasets", json={"name": name})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def new_set(api: Api, dataset_id: int, name: str = "team-a") -> int:
    response = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": name})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def post_files(api: Api, url: str, files: dict[str, bytes]) -> httpx.Response:
    parts = [("files", (n, data, "application/octet-stream")) for n, data in files.items()]
    return api.client.post(url, headers=api.headers["annotator"], files=parts)


def masks_url(dataset_id: int, set_id: int) -> str:
    return f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks"


def snapshot(api: Api) -> tuple[int, int, int, frozenset[str]]:
    """Rows of cases, masks and files, and the blobs in the store."""
    with api.sessions() as session:
        rows = [
            session.scalar(select(func.count()).select_from(t)) for t in (Case, Mask, StoredFile)
        ]
    blobs = api.store.blobs
    names = (
        frozenset(p.name for p in blobs.rglob("*") if p.is_file())
        if blobs.exists()
        else frozenset()
    )
    return int(rows[0] or 0), int(rows[1] or 0), int(rows[2] or 0), names


def assert_unchanged(api: Api, before: tuple[int, int, int, frozenset[str]]) -> None:
    """Nothing kept: the same rows and blobs as ``before``, and no staging folder left."""
    assert snapshot(api) == before
    tmp = api.store.tmp
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())


# Distinctive patient identifiers, one patient per volume of ``slab_cases``: a test greps every
# log and error body for them (and for the birth dates written as ISO dates).
PATIENTS = {
    "BRAIN1": ("PHI12345", "Zyxwvut^Quorbl", "19311231"),
    "BREAST1": ("PHI67890", "Ozymandias^Kestrel", "19440229"),
}
IDENTIFIERS = sorted(
    {v for pid, name, born in PATIENTS.values() for v in (pid, born, *name.split("^"))}
    | {f"{b[:4]}-{b[4:6]}-{b[6:]}" for _, _, b in PATIENTS.values()}
)


def with_patients(cases: list[BuiltCase]) -> list[BuiltCase]:
    """``cases`` (changed in place) with ``PATIENTS``' identifiers in every image and mask, and
    in the export's folder names, as a PACS names them.
    """
    for case in cases:
        patient_id, name, born = PATIENTS[case.patient_id]
        for ds in (*case.images, case.mask):
            ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, name, born
        case.patient_id = f"{name.replace('^', '_')}_{patient_id}"  # the export's folder
    return cases


def leaks(text: str) -> list[str]:
    """The identifiers of ``PATIENTS`` found in ``text``, in any case."""
    return [value for value in IDENTIFIERS if value.lower() in text.lower()]
