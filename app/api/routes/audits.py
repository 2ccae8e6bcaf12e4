"""Audits: submit (queued for a worker), follow, cancel."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from app.api.deps import (
    Annotator,
    AnnotatorAuditDep,
    AuditDep,
    EnqueueDep,
    Limit,
    Offset,
    SessionDep,
    Viewer,
)
from app.api.docs import errors_of
from app.api.params import DbIdQuery
from app.db.enums import AuditStatus
from app.db.tables import Audit
from app.schemas import AuditCreate, AuditOut, Page
from app.services import audits

router = APIRouter(prefix="/v1/audits", tags=["audits"])


def _out(session: Session, audit: Audit) -> AuditOut:
    return AuditOut.of(audit, audits.count_cases(session, audit))


@router.post("", status_code=202, responses=errors_of(404, 422, 503))
def create_audit(
    body: AuditCreate, session: SessionDep, principal: Annotator, enqueue: EnqueueDep
) -> AuditOut:
    """Audit the masks of an annotation set: checked now, run by a worker. Answers 202 with the
    audit, status `queued`; follow it with GET /v1/audits/{id}.
    """
    audit = audits.submit_audit(
        session,
        principal,
        dataset_id=body.dataset_id,
        annotation_set_id=body.annotation_set_id,
        config=body.parameters,
        enqueue=enqueue,
    )
    return _out(session, audit)


@router.get("", responses=errors_of())
def list_audits(
    session: SessionDep,
    principal: Viewer,
    dataset_id: DbIdQuery | None = None,
    status: AuditStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditOut]:
    """List the project's audits, newest first."""
    page = audits.list_audits(
        session,
        principal.project_id,
        dataset_id=dataset_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    items = [_out(session, a) for a in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{audit_id}", responses=errors_of(404))
def get_audit(audit: AuditDep, session: SessionDep) -> AuditOut:
    """An audit's status, progress (phase, epoch, percent, ETA) and, once done, its summary."""
    return _out(session, audit)


@router.post("/{audit_id}/cancel", responses=errors_of(404, 409))
def cancel_audit(audit: AnnotatorAuditDep, session: SessionDep) -> AuditOut:
    """Cancel a queued or running audit (409 if it has already finished)."""
    return _out(session, audits.cancel_audit(session, audit))
