"""The review loop: corrected masks, cases sent back, resolving an audit into a new annotation
set, and mask downloads by label tag (zips with a manifest).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    AnnotationSetDep,
    Annotator,
    AnnotatorAuditDep,
    AuditDep,
    Reviewer,
    ReviewerAuditDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    annotation_set_dep,
)
from app.api.docs import UPLOAD_BODY, errors_of
from app.api.routes.annotation_sets import set_out
from app.api.upload import receive_upload
from app.db.enums import Role
from app.db.tables import AnnotationSet
from app.dicom_uploads import DicomUpload
from app.errors import Invalid
from app.schemas import (
    AnnotationSetOut,
    CorrectionOut,
    DicomwebPush,
    DicomwebPushed,
    ResolveCreate,
    ReviewOut,
    ReworkOut,
)
from app.services import dicomweb, exports, resolve, reviews
from app.storage import Store
from imaging.errors import ErrorCode

router = APIRouter(tags=["review loop"])

ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "labels/<tag>/ and manifest.csv"}
}


def _case_name(case: str) -> str:
    return case


# The case's name in the path, after ``audit_id`` (as in ``routes.results``).
CaseName = Annotated[str, Depends(_case_name)]
ReviewerAnnotationSetDep = Annotated[AnnotationSet, Depends(annotation_set_dep(Role.reviewer))]


def send_zip(store: Store, build: Callable[[Path], Path]) -> FileResponse:
    """Send the zip ``build(folder)`` writes into a private folder, removed once sent."""
    folder = store.new_folder()
    try:
        archive = build(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post(
    "/v1/audits/{audit_id}/cases/{case}/corrections",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses=errors_of(403, 404, 409, 413, 422, 507),
)
async def add_correction(
    audit: AnnotatorAuditDep,
    case: CaseName,
    request: Request,
    principal: Annotator,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    comment: Annotated[str, Query(max_length=10_000)] = "",
) -> CorrectionOut:
    """Upload a corrected mask for the case (one file, in the format of the audited mask, on
    the case's grid, with the audit's classes). Reviewers may correct any case; annotators
    only one whose latest decision is `needs_rework` (403 `not_in_rework` otherwise). The
    latest word on a case, decision or correction, is what a resolve follows.
    """
    with store.staging() as folder:
        received = await receive_upload(request, settings, folder)
        if isinstance(received, DicomUpload):
            raise Invalid(
                ErrorCode.UNSUPPORTED_FORMAT,
                "corrected DICOM masks are not taken yet; upload the corrections as a new "
                "annotation set instead",
            )
        row = await run_in_threadpool(
            reviews.add_correction,
            session,
            store,
            principal,
            audit,
            case,
            received,
            comment=comment,
        )
        return CorrectionOut.of(row)


@router.get("/v1/audits/{audit_id}/rework", responses=errors_of(404))
def rework(audit: AuditDep, session: SessionDep) -> list[ReworkOut]:
    """The cases sent back to the annotators: latest decision `needs_rework`, no correction
    since; by case name.
    """
    return [
        ReworkOut(case_id=case.id, case=case.name, review=ReviewOut.of(review))
        for case, review in reviews.open_for_rework(session, audit)
    ]


@router.post("/v1/audits/{audit_id}/resolve", status_code=201, responses=errors_of(404, 409, 422))
def resolve_audit(
    audit: ReviewerAuditDep,
    body: ResolveCreate,
    principal: Reviewer,
    session: SessionDep,
    store: StoreDep,
) -> AnnotationSetOut:
    """Make a new annotation set (tag `final`) of the dataset from the audit's decisions: per
    case the latest word wins (a later correction: `corrected`; `accept_cleansed`: the
    cleansed mask; `keep_original`: the audited mask); the cases no decision settles (none, or
    `needs_rework` without a correction) follow `policy`. Its lineage and each case's source
    are kept; it can be listed, exported and audited like any set. 409 `audit_not_finished`
    until the audit succeeded.
    """
    aset, _ = resolve.resolve(
        session,
        store,
        principal,
        audit,
        policy=body.policy,
        name=body.name,
        description=body.description,
    )
    return set_out(session, aset)


@router.get(
    "/v1/datasets/{dataset_id}/annotation-sets/{set_id}/export",
    response_class=FileResponse,
    responses={**ZIP, **errors_of(404)},
)
def export_set(aset: AnnotationSetDep, session: SessionDep, store: StoreDep) -> FileResponse:
    """A zip of the set's masks in their own format, `labels/<tag>/<case><ext>` (tag
    `original` or `final`), with `manifest.csv`: case, file, source, decision, reviewer, time,
    settled_by.
    """
    return send_zip(store, lambda folder: exports.export_set(session, store, aset, folder))


@router.get(
    "/v1/audits/{audit_id}/labels/cleansed",
    response_class=FileResponse,
    responses={**ZIP, **errors_of(404, 409)},
)
def export_cleansed(audit: AuditDep, session: SessionDep, store: StoreDep) -> FileResponse:
    """The audit's cleansed masks as tag `cleansed`: `labels/cleansed/<case><ext>` with
    `manifest.csv` (each case's latest decision, if any).
    """
    return send_zip(store, lambda folder: exports.export_cleansed(session, store, audit, folder))


@router.post(
    "/v1/datasets/{dataset_id}/annotation-sets/{set_id}/dicomweb/push",
    responses=errors_of(404, 422, 502),
)
def push_set(
    aset: ReviewerAnnotationSetDep,
    body: DicomwebPush,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> DicomwebPushed:
    """Store the set's DICOM-SEG (or RTSTRUCT) masks on a DICOMweb server (STOW-RS), e.g. a
    resolved set (tag `final`); they reference the series they were drawn on. Needs a
    reviewer's key. A PACS failure is a 502 `pacs_error`.
    """
    password = body.password.get_secret_value() if body.password is not None else None
    server = dicomweb.Server(body.url, body.user, password)
    cases, stored = dicomweb.push_set(session, store, aset, settings, server, cases=body.cases)
    return DicomwebPushed(url=body.url, cases=cases, instances=stored)
