"""The job state machine (audits; comparisons of annotation sets too). Every transition is one
compare-and-set UPDATE, so two workers (or a worker and a cancel) racing for the same audit
cannot both win, and a redelivered task is harmless: it finds the audit no longer in the state
it expects and stops.

    queued -> running -> succeeded | failed | cancelled
    queued -> failed | cancelled;  running -> queued (released for a retry)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, update
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus
from app.db.tables import Audit, Comparison

Q, R = AuditStatus.queued, AuditStatus.running
ALLOWED: dict[AuditStatus, set[AuditStatus]] = {
    Q: {R, AuditStatus.failed, AuditStatus.cancelled},
    R: {R, Q, AuditStatus.succeeded, AuditStatus.failed, AuditStatus.cancelled},
}


Job = type[Audit] | type[Comparison]


def compare_and_set(
    session: Session,
    audit_id: int,
    *,
    expect: Iterable[AuditStatus],
    to: AuditStatus,
    when: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """Move the audit to ``to`` only if its status is in ``expect`` (and ``when`` holds).

    Returns whether this call moved it. Flushes only: the caller commits, so that a transition
    can be part of a larger unit of work (results written and succeeded, or neither).
    """
    return move_job(session, Audit, audit_id, expect=expect, to=to, when=when, **values)


def move_job(
    session: Session,
    job: Job,
    job_id: int,
    *,
    expect: Iterable[AuditStatus],
    to: AuditStatus,
    when: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """``compare_and_set`` for a row of any job table (an ``Audit``, a ``Comparison``)."""
    expect = set(expect)
    bad = [s for s in expect if to not in ALLOWED.get(s, set())]
    if bad:
        raise ValueError(f"no transition from {sorted(bad)} to {to}")
    statement = (
        update(job)
        .where(job.id == job_id, job.status.in_([s.value for s in expect]), *when)
        .values(status=to.value, **values)
        .execution_options(synchronize_session="fetch")
    )
    result = cast(CursorResult[Any], session.execute(statement))  # an UPDATE's result
    return result.rowcount == 1
