"""Comparisons of annotation sets: submit (a job on the cpu queue), follow, read the rows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from app.api.deps import Limit, Offset, Reviewer, SessionDep, SettingsDep, Viewer
from app.api.docs import errors_of
from app.api.params import DbId, DbIdQuery
from app.db.enums import AuditStatus
from app.db.tables import Comparison, ComparisonRow
from app.queue import send_comparison
from app.schemas import (
    ComparisonCreate,
    ComparisonOut,
    ComparisonProgressOut,
    ComparisonRowOut,
    FailureOut,
    Page,
)
from app.services import comparisons
from app.services.comparisons import Enqueue
from models.agreement import ClassStatus

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])


def get_enqueue(request: Request, settings: SettingsDep) -> Enqueue:
    client = request.app.state.celery
    return lambda comparison_id: send_comparison(client, comparison_id, queue=settings.cpu_queue)


EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]


def _out(session: Session, comparison: Comparison) -> ComparisonOut:
    failed = comparison.error_code is not None or comparison.error_message is not None
    return ComparisonOut(
        id=comparison.id,
        dataset_id=comparison.dataset_id,
        annotation_set_ids=comparisons.set_ids(session, comparison.id),
        status=AuditStatus(comparison.status),
        cases=comparison.cases,
        progress=ComparisonProgressOut(
            cases_done=comparison.cases_done,
            percent=comparison.percent,
            heartbeat_at=comparison.heartbeat_at,
        ),
        summary=comparison.summary,
        consensus_set_id=comparison.consensus_set_id,
        error=(
            FailureOut(code=comparison.error_code, message=comparison.error_message)
            if failed
            else None
        ),
        attempts=comparison.attempts,
        task_id=comparison.task_id,
        created_at=comparison.created_at,
        started_at=comparison.started_at,
        finished_at=comparison.finished_at,
    )


def _row(row: ComparisonRow) -> ComparisonRowOut:
    return ComparisonRowOut(
        rank=row.rank,
        case_id=row.case_id,
        case=row.case.name,
        label=row.label,
        set_a_id=row.set_a_id,
        set_b_id=row.set_b_id,
        status=row.status,
        dice=row.dice,
        mean_distance_mm=row.mean_distance_mm,
        p95_distance_mm=row.p95_distance_mm,
        objects_a=row.objects_a,
        objects_b=row.objects_b,
        only_in_a=row.only_in_a,
        only_in_b=row.only_in_b,
        disagreement=row.disagreement,
    )


@router.post("", status_code=202, responses=errors_of(404, 422, 503))
def create_comparison(
    body: ComparisonCreate, session: SessionDep, principal: Reviewer, enqueue: EnqueueDep
) -> ComparisonOut:
    """Compare two or more annotation sets of one dataset, case by case and class by class:
    run by a worker on the cpu queue. Answers 202, status `queued`; follow it with
    GET /v1/comparisons/{id}.
    """
    comparison = comparisons.submit_comparison(
        session, principal, annotation_set_ids=body.annotation_set_ids, enqueue=enqueue
    )
    return _out(session, comparison)


@router.get("", responses=errors_of())
def list_comparisons(
    session: SessionDep,
    principal: Viewer,
    dataset_id: DbIdQuery | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ComparisonOut]:
    """List the project's comparisons, newest first."""
    page = comparisons.list_comparisons(
        session, principal.project_id, dataset_id=dataset_id, limit=limit, offset=offset
    )
    items = [_out(session, c) for c in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{comparison_id}", responses=errors_of(404))
def get_comparison(comparison_id: DbId, session: SessionDep, principal: Viewer) -> ComparisonOut:
    """A comparison's status, progress and, once done, its summary."""
    return _out(session, comparisons.get_comparison(session, principal.project_id, comparison_id))


@router.get("/{comparison_id}/cases", responses=errors_of(404, 422))
def list_comparison_rows(
    comparison_id: DbId,
    session: SessionDep,
    principal: Viewer,
    case: str | None = None,
    status: ClassStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ComparisonRowOut]:
    """Per case, class and pair of sets: Dice, mean and 95th-percentile surface distance (mm)
    and one-sided objects, the most disagreement first; filter by `case` (its name) and `status`.
    """
    comparison = comparisons.get_comparison(session, principal.project_id, comparison_id)
    page = comparisons.list_rows(
        session, comparison, case=case, status=status, limit=limit, offset=offset
    )
    return Page(items=[_row(r) for r in page.items], total=page.total, limit=limit, offset=offset)
