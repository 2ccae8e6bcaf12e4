"""No patient identifier in a log or an error: a DICOM round trip through a real ``segaudit
serve`` and a real ``segaudit worker`` (PostgreSQL, Redis, Orthanc), with PatientID,
PatientName and birth dates set to distinctive strings, in the files and in the export's folder
names. Every line either process wrote (the access log included), every error body of the
refused requests, the audit's failure message and the export's text files are searched.
"""

from __future__ import annotations

import io
import signal
import zipfile
from typing import Any

import httpx
from sqlalchemy import select

from app.db.enums import Role
from app.db.tables import Case, StoredFile
from app.services import keys
from imaging.dicom import web
from tests.app.dicom_data import export_zip, leaks, with_patients
from tests.imaging.dicom.builders import slab_cases, write_cases
from tests.imaging.dicom.conftest import orthanc  # noqa: F401  fixture: a real Orthanc
from tests.worker.conftest import Proc, Service, wait_until

DICOM_TINY = {"size": 32, "epochs": 2, "seed": 0}  # as tests/app/test_dicom_audit.py


def _serve(service: Service) -> tuple[Proc, str]:
    server = service.spawn("server", "serve", "--port", "0", "--url-file", "url")
    url_file = service.tmp / "url"
    wait_until(url_file.exists, 30, "the server's URL", server)
    url = url_file.read_text().strip()
    wait_until(lambda: _ready(url), 30, "the server to be ready", server)
    return server, url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _finished(client: httpx.Client, audit_id: int) -> dict[str, Any] | None:
    audit = client.get(f"/v1/audits/{audit_id}").json()
    return audit if audit["status"] in ("succeeded", "failed", "cancelled") else None


def test_a_dicom_round_trip_logs_and_answers_no_patient_identifier(
    make_service,
    orthanc,  # noqa: F811
    tmp_path,
):
    cases = with_patients(slab_cases())  # UIDs of their own: Orthanc is shared by the session
    service = make_service(dicomweb_servers=orthanc)
    with service.api.sessions() as session:
        project = keys.get_or_create_project(session, "alpha")
        _, reviewer_key = keys.create_key(session, project, Role.reviewer, "reviewer")
    server, url = _serve(service)
    worker = service.worker()
    archive = export_zip(tmp_path, cases)
    annotator = {"X-API-Key": service.api.headers["annotator"]["X-API-Key"]}
    refused: list[httpx.Response] = []
    texts: list[str] = []

    def upload(client: httpx.Client, path: str, data: bytes) -> httpx.Response:
        return client.post(path, files=[("files", ("export.zip", data, "application/zip"))])

    with httpx.Client(base_url=url, headers=annotator, timeout=60) as client:
        dataset_id = client.post("/v1/datasets", json={"name": "pacs"}).json()["id"]
        added = upload(client, f"/v1/datasets/{dataset_id}/images", archive)
        assert added.status_code == 201, added.text
        names = sorted(c["name"] for c in added.json()["cases"])
        assert names == sorted(c.name for c in cases)
        set_id = client.post(
            f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "team"}
        ).json()["id"]
        masks = f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks"
        assert upload(client, masks, archive).status_code == 201
        texts += [added.text, client.get(f"/v1/datasets/{dataset_id}/cases").text]

        # Refusals: the same series again; a SEG of a series the dataset lacks, in a folder
        # named after the patient; another set's SEGs into a DICOM set twice.
        refused.append(upload(client, f"/v1/datasets/{dataset_id}/images", archive))
        lone = export_zip(tmp_path, with_patients(slab_cases(multiframe_slab=None)[:1]))
        refused.append(upload(client, masks, lone))
        refused.append(upload(client, masks, archive))
        assert [r.status_code for r in refused] == [409, 422, 409], [r.text for r in refused]

        submitted = client.post(
            "/v1/audits",
            json={
                "dataset_id": dataset_id,
                "annotation_set_id": set_id,
                "parameters": DICOM_TINY,
            },
        )
        assert submitted.status_code == 202, submitted.text
        audit_id = submitted.json()["id"]
        audit = wait_until(lambda: _finished(client, audit_id), 240, "the audit", worker)
        assert audit["status"] == "succeeded", audit["error"]
        rows = client.get(f"/v1/audits/{audit_id}/cases", params={"limit": 50}).json()
        assert sorted(r["case"] for r in rows["items"]) == names
        texts.append(str(rows))
        first = names[0]
        for part in ("", "/cleansed-mask", "/issue-map", "/image"):
            assert client.get(f"/v1/audits/{audit_id}/cases/{first}{part}").status_code == 200
        # A case's result: its patient labels for a reviewer, none for an annotator.
        detail = f"/v1/audits/{audit_id}/cases/{first}"
        assert client.get(detail).json()["patient_labels"] is None
        texts.append(client.get(detail).text)
        labels = client.get(detail, headers={"X-API-Key": reviewer_key}).json()["patient_labels"]
        assert labels["patient_id"] in ("PHI12345", "PHI67890") and labels["patient_birth_date"]
        export = client.get(f"/v1/audits/{audit_id}/export")
        with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
            assert f"cleansed/{first}.dcm" in zf.namelist()
            texts += [zf.read(n).decode() for n in ("scores.csv", "run.json", "summary.json")]
        refused.append(client.get(f"/v1/audits/{audit_id}/cases/no-such-case"))
        # An annotator may not push; a reviewer pushes the cleansed SEGs to the PACS.
        push = f"/v1/audits/{audit_id}/dicomweb/push"
        refused.append(client.post(push, json={"url": orthanc}))
        assert refused[-1].status_code == 403
        pushed = client.post(push, json={"url": orthanc}, headers={"X-API-Key": reviewer_key})
        assert pushed.status_code == 200, pushed.text
        texts.append(pushed.text)

        # DICOMweb: the brain study pulled from the PACS gets the names the upload gave it.
        brain = [c for c in cases if "PHI12345" in c.patient_id]
        web.push(web.connect(orthanc), write_cases(brain, tmp_path / "im", tmp_path / "seg"))
        pulled_into = client.post("/v1/datasets", json={"name": "pulled"}).json()["id"]
        pull = f"/v1/datasets/{pulled_into}/dicomweb/pull"
        study = str(brain[0].images[0].StudyInstanceUID)
        pulled = client.post(pull, json={"url": orthanc, "study_uid": study})
        assert pulled.status_code == 201, pulled.text
        assert sorted(c["name"] for c in pulled.json()["cases"]) == sorted(c.name for c in brain)
        texts.append(pulled.text)
        refused.append(client.post(pull, json={"url": orthanc, "study_uid": study}))
        assert refused[-1].status_code == 409

        # The worker fails an audit on a series that rotted in the store after its check.
        with service.api.sessions() as session:
            sha = session.scalar(
                select(StoredFile.sha256)
                .join(Case, Case.image_file_id == StoredFile.id)
                .where(Case.name == first, Case.dataset_id == dataset_id)
            )
        blob = service.api.store.path(sha)
        with zipfile.ZipFile(blob) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        with zipfile.ZipFile(blob, "w") as zf:
            for n, data in members.items():
                zf.writestr(n, data[: len(data) // 2])  # every instance cut in half
        again = client.post(
            "/v1/audits",
            json={
                "dataset_id": dataset_id,
                "annotation_set_id": set_id,
                "parameters": DICOM_TINY,
            },
        )
        again_id = again.json()["id"]
        failed = wait_until(lambda: _finished(client, again_id), 120, "a failure", worker)
        assert failed["status"] == "failed" and first in failed["error"]["message"], failed
        texts.append(str(failed["error"]))

    for proc in (server, worker):  # stop them, so that every line they wrote is in the logs
        proc.process.send_signal(signal.SIGTERM)
        proc.process.wait(30)
    logs = {proc.name: proc.text() for proc in (server, worker)}
    assert f"GET /v1/audits/{audit_id}/cases/{first}/cleansed-mask 200" in logs["server"]
    assert f"audit {audit_id}: succeeded" in logs["worker"]
    assert f"audit {again_id}: failed (" in logs["worker"]
    for name, text in logs.items():
        assert not leaks(text), f"{name} logged {leaks(text)}:\n{text}"
    for response in refused:
        assert response.status_code >= 400 and not leaks(response.text), response.text
    for text in texts:
        assert not leaks(text), text
