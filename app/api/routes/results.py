"""An audit's per-case results, their files, the export and the reviews."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    AuditDep,
    Limit,
    Offset,
    Remembered,
    RememberedDep,
    Reviewer,
    ReviewerAuditDep,
    SessionDep,
    StoreDep,
    Viewer,
    api_key,
    principal_of,
    require,
)
from app.api.docs import errors_of
from app.api.params import DbId
from app.db.enums import AuditStatus, Role
from app.db.tables import Audit, StoredFile
from app.schemas import (
    CorrectionOut,
    HistoryItem,
    Page,
    ResultDetail,
    ResultOut,
    ReviewCreate,
    ReviewOut,
)
from app.services import audits, keys, listing, resolve, results, reviews
from app.services.dicom import SERIES_FORMAT
from app.services.results import FileKind
from app.storage import Store
from imaging.formats import split_name
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG

router = APIRouter(tags=["results"])

MEDIA_TYPES = {
    "png": "image/png",
    "tiff": "image/tiff",
    DICOM_SEG: "application/dicom",
    DICOM_RTSTRUCT: "application/dicom",
    "dicom": "application/dicom",
    "jpeg": "image/jpeg",
    SERIES_FORMAT: "application/zip",
}
Sort = Literal[
    "-noise_score", "noise_score", "rank", "-rank", "case", "-case", "-dice_gap", "dice_gap"
]
Score = Annotated[float | None, Query(ge=0, le=1, description="noise_score bound")]


def _case_name(case: str) -> str:
    return case


# A case's name in the path. A dependency only so that it follows ``audit_id`` (which the
# audit's dependency brings) in the operation's parameters, as it does in the path.
CaseName = Annotated[str, Depends(_case_name)]

DOWNLOADS: dict[str, FileKind] = {
    "cleansed-mask": "cleansed",
    "issue-map": "issue_map",
    "pseudo-label": "pseudo_label",
}


@router.get(
    "/v1/audits/{audit_id}/cases",
    response_model=Page[ResultOut],
    responses=errors_of(404, 422),
)
async def list_results(
    request: Request,
    audit_id: DbId,
    key: Annotated[str | None, Security(api_key)],
    remembered: RememberedDep,
    sort: Sort = "-noise_score",
    flagged: bool | None = None,
    min_score: Score = None,
    max_score: Score = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    """The audit's per-case scores, most suspect first by default; filter by `flagged` and
    a `noise_score` range, sort by `noise_score`, `rank`, `case` or `dice_gap` (`-` = descending).
    """
    query = listing.Query(sort, flagged, min_score, max_score, limit, offset)
    # A page of a settled audit that this process remembers, for a key it remembers, whose
    # rows it has all listed before, is sent from memory: no thread pool, no database.
    principal = keys.remembered_principal(remembered.principals, key) if key else None
    if principal is not None:
        require(Role.viewer)(principal)
        settled = remembered.audits.get((principal.project_id, audit_id))
        database = str(request.app.state.engine.url)
        if settled is not None and (kept := listing.page_in_memory(database, settled, query)):
            return _page_response(*kept, query)
    sessions = request.app.state.sessions
    rows, total = await run_in_threadpool(_listing_rows, sessions, key, remembered, audit_id, query)
    return _page_response(rows, total, query)


def _listing_rows(
    sessions: sessionmaker[Session],
    key: str | None,
    remembered: Remembered,
    audit_id: int,
    query: listing.Query,
) -> tuple[list[bytes], int]:
    """The listing's rows and total, with the checks of ``AuditDep`` (401, 403, 404)."""
    with sessions() as session:
        principal = require(Role.viewer)(principal_of(session, key, remembered))
        audit: Audit | listing.SettledAudit | None = remembered.audits.get(
            (principal.project_id, audit_id)
        )
        if audit is None:
            row = audits.get_audit(session, principal.project_id, audit_id)
            audit = listing.settled(row, results.class_names_of(row)) or row
            if isinstance(audit, listing.SettledAudit):
                remembered.audits.put((principal.project_id, audit_id), audit)
        names = (
            audit.class_names
            if isinstance(audit, listing.SettledAudit)
            else results.class_names_of(audit)
        )
        return results.rendered_page(
            session, audit, query, lambda r: ResultOut.of(r, names).model_dump_json().encode()
        )


def _page_response(rows: list[bytes], total: int, query: listing.Query) -> Response:
    """``Page[ResultOut]`` as pydantic writes it, from rows written by ``ResultOut``: FastAPI
    does not check the page again (the model still documents the response)."""
    tail = f'],"total":{total},"limit":{query.limit},"offset":{query.offset}}}'
    body = b'{"items":[' + b",".join(rows) + tail.encode()
    return Response(body, media_type="application/json")


@router.get("/v1/audits/{audit_id}/cases/{case}", responses=errors_of(404))
def get_result(
    audit: AuditDep, case: CaseName, session: SessionDep, principal: Viewer
) -> ResultDetail:
    """One case's figures (`case` is its name), links to its masks, and its reviews; a DICOM
    case's patient labels for reviewers and admins.
    """
    result = results.get_result(session, audit, case)
    base = f"/v1/audits/{audit.id}/cases/{case}"
    files = {
        path: f"{base}/{path}"
        for path, kind in DOWNLOADS.items()
        if getattr(result, f"{kind}_file_id") is not None
    }
    return ResultDetail(
        **ResultOut.of(result, results.class_names_of(audit)).model_dump(),
        slices=result.slices,
        files=files,
        reviews=[ReviewOut.of(r) for r in reviews.list_reviews(session, result)],
        corrections=[CorrectionOut.of(c) for c in reviews.list_corrections(session, result)],
        patient_labels=result.case.dicom_labels if principal.sees_patient_labels else None,
    )


def media_type(stored: StoredFile) -> str:
    """The media type of a stored file: by its format, gzip for ``.gz`` (e.g. ``.nii.gz``)."""
    if stored.name.lower().endswith(".gz"):  # e.g. a DICOM case's .nii.gz issue map
        return "application/gzip"
    return MEDIA_TYPES.get(stored.format) or "application/octet-stream"


def image_name(stored: StoredFile, case: str) -> str:
    """The download name of a case's image: the case's name with the file's extension."""
    if stored.format == SERIES_FORMAT:
        return f"{case}.zip"
    return f"{case}{split_name(Path(stored.name))[1]}"


def _download(
    audit: Audit, case: str, kind: FileKind, session: Session, store: Store
) -> FileResponse:
    path, stored = results.result_file(session, store, audit, case, kind)
    return FileResponse(path, media_type=media_type(stored), filename=stored.name)


@router.get(
    "/v1/audits/{audit_id}/cases/{case}/cleansed-mask",
    response_class=FileResponse,
    responses=errors_of(404),
)
def cleansed_mask(
    audit: AuditDep, case: CaseName, session: SessionDep, store: StoreDep
) -> FileResponse:
    """The cleansed mask, in the format, grid and dtype of the given mask."""
    return _download(audit, case, "cleansed", session, store)


@router.get(
    "/v1/audits/{audit_id}/cases/{case}/issue-map",
    response_class=FileResponse,
    responses=errors_of(404),
)
def issue_map(
    audit: AuditDep, case: CaseName, session: SessionDep, store: StoreDep
) -> FileResponse:
    """Per pixel, the probability that the given label is wrong (uint8 0..255), in the mask's
    format.
    """
    return _download(audit, case, "issue_map", session, store)


@router.get(
    "/v1/audits/{audit_id}/cases/{case}/pseudo-label",
    response_class=FileResponse,
    responses=errors_of(404),
)
def pseudo_label(
    audit: AuditDep, case: CaseName, session: SessionDep, store: StoreDep
) -> FileResponse:
    """The suggested pseudo label (offered for every case), in the mask's format."""
    return _download(audit, case, "pseudo_label", session, store)


@router.get(
    "/v1/audits/{audit_id}/export",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "scores.csv, slices.csv, run.json, summary.json, cleansed/, "
            "pseudo_labels/, issue_maps/",
        },
        **errors_of(404, 409),
    },
)
def export(audit: AuditDep, session: SessionDep, store: StoreDep) -> FileResponse:
    """A zip of what the audit made: `scores.csv`, `slices.csv` (volumes), `run.json`,
    `summary.json` (audit id, dates, engine version), and per case `cleansed/`,
    `pseudo_labels/` and `issue_maps/` (`<case><ext>`).
    """
    folder = store.new_folder()
    try:
        archive = results.export_zip(session, store, audit, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.get(
    "/v1/audits/{audit_id}/cases/{case}/image",
    response_class=FileResponse,
    responses=errors_of(404),
)
def case_image(
    audit: AuditDep, case: CaseName, session: SessionDep, store: StoreDep
) -> FileResponse:
    """The case's image as it was uploaded (a DICOM series as a zip of its instances)."""
    path, stored = results.case_image(session, store, audit, case)
    return FileResponse(path, media_type=media_type(stored), filename=image_name(stored, case))


@router.get("/v1/audits/{audit_id}/history", responses=errors_of(404, 409))
def run_history(audit: AuditDep) -> list[dict[str, Any]]:
    """The run's per-epoch history (run.json's `history`: epoch, phase, loss, flagged,
    separation, seconds; with cross-fitting each network's epochs in turn, with its `fold`).
    """
    return results.run_history(audit)


@router.post(
    "/v1/audits/{audit_id}/cases/{case}/review",
    status_code=201,
    responses=errors_of(404, 409, 422),
)
def review(
    audit: ReviewerAuditDep,
    case: CaseName,
    body: ReviewCreate,
    session: SessionDep,
    principal: Reviewer,
) -> ReviewOut:
    """Record a decision on the case's result; earlier reviews are kept, never overwritten."""
    row = reviews.add_review(
        session, principal, audit, case, decision=body.decision, comment=body.comment
    )
    return ReviewOut.of(row)


@router.get("/v1/cases/{case_id}/history", responses=errors_of(404))
def case_history(case_id: DbId, session: SessionDep, principal: Viewer) -> list[HistoryItem]:
    """The case's result in every audit that scored it, oldest first: with re-audits of a
    resolved set (tag `final`), its score before and after, and where its mask came from.
    """
    found = results.case_history(session, principal.project_id, case_id)
    notes = resolve.history_notes(session, case_id, [audit for _, audit in found])
    return [
        HistoryItem(
            audit_id=audit.id,
            annotation_set_id=audit.annotation_set_id,
            annotation_set_name=notes[audit.id].set_name,
            annotation_set_tag=notes[audit.id].tag,
            mask_source=notes[audit.id].source,
            decision=notes[audit.id].decision,
            audit_status=AuditStatus(audit.status),
            audit_created_at=audit.created_at,
            result=ResultOut.of(result, results.class_names_of(audit)),
        )
        for result, audit in found
    ]
