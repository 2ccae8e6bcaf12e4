"""Reviews of a case's result: added with who and when, never changed or removed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus, Decision
from app.db.tables import Audit, ResultRow, Review
from app.errors import Conflict
from app.services.keys import Principal
from app.services.results import get_result
from imaging.errors import ErrorCode


def add_review(
    session: Session,
    principal: Principal,
    audit: Audit,
    case_name: str,
    *,
    decision: Decision,
    comment: str = "",
) -> Review:
    """Record a reviewer's decision on one case's result. Commits."""
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its cases can be reviewed once it succeeded",
        )
    result = get_result(session, audit, case_name)
    review = Review(
        audit_id=audit.id,
        case_id=result.case_id,
        decision=Decision(decision).value,
        comment=comment,
        key_id=principal.key_id,
        reviewer=principal.name,
    )
    session.add(review)
    session.commit()
    return review


def list_reviews(session: Session, result: ResultRow) -> list[Review]:
    query = (
        select(Review)
        .where(Review.audit_id == result.audit_id, Review.case_id == result.case_id)
        .order_by(Review.created_at, Review.id)
    )
    return list(session.scalars(query))
