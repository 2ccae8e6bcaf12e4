"""DICOMweb: pull a study from a PACS into a dataset, push an audit's cleansed masks back."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import (
    Annotator,
    AnnotatorDatasetDep,
    ReviewerAuditDep,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from app.api.docs import errors_of
from app.schemas import CaseOut, CasesAdded, DicomwebPull, DicomwebPush, DicomwebPushed
from app.services import dicomweb
from app.services.dicomweb import Server

router = APIRouter(tags=["dicomweb"])


def _server(body: DicomwebPull | DicomwebPush) -> Server:
    password = body.password.get_secret_value() if body.password is not None else None
    return Server(body.url, body.user, password)


@router.post(
    "/v1/datasets/{dataset_id}/dicomweb/pull",
    status_code=201,
    responses=errors_of(404, 409, 413, 422, 502, 507),
)
def pull(
    dataset: AnnotatorDatasetDep,
    principal: Annotator,
    body: DicomwebPull,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> CasesAdded:
    """Retrieve a study, or some of its series, from a DICOMweb server (QIDO-RS, WADO-RS) into
    the dataset: each image series becomes a case, checked as an uploaded PACS export is;
    objects that are not images are left out with a note. A PACS failure is a 502 `pacs_error`.
    """
    with store.staging() as folder:
        cases, notes = dicomweb.pull(
            session,
            store,
            dataset,
            settings,
            _server(body),
            study_uid=body.study_uid,
            series_uids=body.series_uids,
            folder=folder,
        )
    labels = principal.sees_patient_labels
    return CasesAdded(
        count=len(cases), cases=[CaseOut.of(c, labels=labels) for c in cases], notes=notes
    )


@router.post("/v1/audits/{audit_id}/dicomweb/push", responses=errors_of(404, 409, 422, 502))
def push(
    audit: ReviewerAuditDep,
    body: DicomwebPush,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> DicomwebPushed:
    """Store the audit's cleansed DICOM-SEG (or RTSTRUCT) objects on a DICOMweb server
    (STOW-RS); they reference the series they were drawn on. Needs a reviewer's key: it puts
    results into a clinical archive. A PACS failure is a 502 `pacs_error`.
    """
    cases, stored = dicomweb.push(session, store, audit, settings, _server(body), cases=body.cases)
    return DicomwebPushed(url=body.url, cases=cases, instances=stored)
