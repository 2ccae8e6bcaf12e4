"""Comparing annotation sets of one dataset: creating, reading and listing comparisons (the
API's side of the job; ``app.services.comparison_jobs`` is the worker's).

A comparison covers the cases that have a mask in every one of its sets when it is created;
masks added later are not part of it (``Mask.created_at``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.enums import AuditStatus
from app.db.tables import (
    AnnotationSet,
    Case,
    Comparison,
    ComparisonRow,
    ComparisonSet,
    Dataset,
    Mask,
)
from app.errors import Invalid, NotFound, Unavailable
from app.services.dicom import is_dicom_dataset
from app.services.keys import Principal
from app.services.pages import Page, paginate
from app.services.state import move_job
from imaging.errors import ErrorCode
from models.agreement import ClassStatus

Enqueue = Callable[[int], str]  # comparison id -> task id
MAX_SETS = 10  # every pair is compared: 45 pairs at most


def submit_comparison(
    session: Session,
    principal: Principal,
    *,
    annotation_set_ids: Sequence[int],
    enqueue: Enqueue,
) -> Comparison:
    """Check the sets, commit a queued comparison, then enqueue it; returns the comparison.

    Refused, with nothing written: fewer than two sets or the same set twice, a set not in the
    caller's project (404), sets of different datasets, a DICOM dataset, no case with a mask in
    every set. A broker that refuses the task leaves the comparison ``failed``
    (``broker_unavailable``) and raises ``Unavailable``.
    """
    ids = list(annotation_set_ids)
    _check_ids(ids)
    query = (
        select(AnnotationSet)
        .join(Dataset, Dataset.id == AnnotationSet.dataset_id)
        .where(AnnotationSet.id.in_(ids), Dataset.project_id == principal.project_id)
    )
    sets = {aset.id: aset for aset in session.scalars(query)}
    for set_id in ids:
        if set_id not in sets:
            raise NotFound(ErrorCode.NOT_FOUND, f"no annotation set {set_id} in this project")
    first = sets[ids[0]]
    for set_id in ids[1:]:
        if sets[set_id].dataset_id != first.dataset_id:
            raise Invalid(
                ErrorCode.WRONG_DATASET,
                f"annotation set {set_id} belongs to dataset {sets[set_id].dataset_id} and set "
                f"{first.id} to dataset {first.dataset_id}; a comparison compares annotation "
                "sets of one dataset",
            )
    if is_dicom_dataset(session, first.dataset_id):
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"dataset {first.dataset_id} holds DICOM series; comparisons read PNG, TIFF, NIfTI "
            "and NRRD masks only for now",
        )
    now = utcnow()
    cases = len(common_case_ids(session, ids, before=now))
    if cases == 0:
        raise Invalid(
            ErrorCode.TOO_FEW_CASES,
            f"annotation sets {ids} have no case with a mask in every set; a comparison needs "
            "the same case masked in each",
        )
    comparison = Comparison(
        dataset_id=first.dataset_id,
        created_by_key_id=principal.key_id,
        status=AuditStatus.queued,
        cases=cases,
        cases_done=0,
        created_at=now,
    )
    session.add(comparison)
    session.flush()
    session.add_all(
        ComparisonSet(comparison_id=comparison.id, annotation_set_id=set_id, position=position)
        for position, set_id in enumerate(ids)
    )
    session.commit()
    _enqueue(session, comparison, enqueue)
    return comparison


def _check_ids(ids: list[int]) -> None:
    if len(ids) < 2 or len(ids) > MAX_SETS:
        raise Invalid(
            ErrorCode.INVALID_REQUEST,
            f"a comparison needs 2 to {MAX_SETS} annotation sets; got {len(ids)}",
        )
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise Invalid(
            ErrorCode.INVALID_REQUEST, f"annotation sets {twice} are named more than once"
        )


def _enqueue(session: Session, comparison: Comparison, enqueue: Enqueue) -> None:
    try:
        task_id = enqueue(comparison.id)
    except Exception as exc:  # any broker failure: it must not stay queued forever
        message = f"the task queue refused the comparison: {exc}"
        move_job(
            session,
            Comparison,
            comparison.id,
            expect=[AuditStatus.queued],
            to=AuditStatus.failed,
            error_code=ErrorCode.BROKER_UNAVAILABLE,
            error_message=message,
            finished_at=utcnow(),
        )
        session.commit()
        raise Unavailable(
            ErrorCode.BROKER_UNAVAILABLE,
            f"comparison {comparison.id} could not be queued; {message}",
        ) from exc
    comparison.task_id = task_id
    session.commit()


def common_case_ids(session: Session, set_ids: Sequence[int], *, before: dt.datetime) -> list[int]:
    """The cases with a mask in each of ``set_ids`` made before ``before``, by case name."""
    query = (
        select(Mask.case_id)
        .join(Case, Case.id == Mask.case_id)
        .where(Mask.annotation_set_id.in_(list(set_ids)), Mask.created_at <= before)
        .group_by(Mask.case_id, Case.name)
        .having(func.count(func.distinct(Mask.annotation_set_id)) == len(set_ids))
        .order_by(Case.name)
    )
    return list(session.scalars(query))


def get_comparison(session: Session, project_id: int, comparison_id: int) -> Comparison:
    """The project's comparison; another project's is as missing as one that does not exist."""
    comparison = session.scalar(
        select(Comparison)
        .join(Dataset, Dataset.id == Comparison.dataset_id)
        .where(Comparison.id == comparison_id, Dataset.project_id == project_id)
    )
    if comparison is None:
        raise NotFound(ErrorCode.NOT_FOUND, f"no comparison {comparison_id} in this project")
    return comparison


def set_ids(session: Session, comparison_id: int) -> list[int]:
    """The compared annotation sets, in the order the request named them."""
    query = (
        select(ComparisonSet.annotation_set_id)
        .where(ComparisonSet.comparison_id == comparison_id)
        .order_by(ComparisonSet.position)
    )
    return list(session.scalars(query))


def list_comparisons(
    session: Session, project_id: int, *, dataset_id: int | None, limit: int, offset: int
) -> Page[Comparison]:
    """The project's comparisons, newest first."""
    query = (
        select(Comparison)
        .join(Dataset, Dataset.id == Comparison.dataset_id)
        .where(Dataset.project_id == project_id)
        .order_by(Comparison.id.desc())
    )
    if dataset_id is not None:
        query = query.where(Comparison.dataset_id == dataset_id)
    return paginate(session, query, limit=limit, offset=offset)


def list_rows(
    session: Session,
    comparison: Comparison,
    *,
    case: str | None = None,
    status: ClassStatus | None = None,
    limit: int,
    offset: int,
) -> Page[ComparisonRow]:
    """A page of the comparison's rows (case, class, pair), the most disagreement first."""
    where: list[ColumnElement[bool]] = [ComparisonRow.comparison_id == comparison.id]
    if case is not None:
        where.append(Case.name == case)
    if status is not None:
        where.append(ComparisonRow.status == status.value)
    query = (
        select(ComparisonRow)
        .join(Case, Case.id == ComparisonRow.case_id)
        .where(and_(*where))
        .order_by(ComparisonRow.rank)
    )
    return paginate(session, query, limit=limit, offset=offset)
