"""Creating, reading and cancelling audits (the API's side of the job)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.enums import AuditStatus
from app.db.tables import AnnotationSet, Audit, AuditMask, Case, Dataset, Mask
from app.errors import Conflict, Invalid, NotFound, ServiceError, Unavailable
from app.services.datasets import get_dataset
from app.services.dicom import is_dicom_dataset
from app.services.keys import Principal
from app.services.pages import Page, paginate
from app.services.state import compare_and_set
from imaging import checks
from imaging.errors import ErrorCode, InputError
from models.config import AuditConfig

Enqueue = Callable[[int], str]  # audit id -> task id


def submit_audit(
    session: Session,
    principal: Principal,
    *,
    dataset_id: int,
    annotation_set_id: int,
    config: AuditConfig,
    enqueue: Enqueue,
) -> Audit:
    """Check the inputs, commit a queued audit, then enqueue it; returns the audit.

    The row is committed before the task is sent, so a worker always finds it. If the broker
    refuses the task, the audit is marked failed (``broker_unavailable``) and ``Unavailable``
    is raised.
    """
    dataset = get_dataset(session, principal.project_id, dataset_id)
    aset = session.get(AnnotationSet, annotation_set_id)
    owner = None if aset is None else session.get(Dataset, aset.dataset_id)
    if aset is None or owner is None or owner.project_id != principal.project_id:
        raise NotFound(
            ErrorCode.NOT_FOUND, f"no annotation set {annotation_set_id} in this project"
        )
    if aset.dataset_id != dataset.id:
        raise Invalid(
            ErrorCode.WRONG_DATASET,
            f"annotation set {aset.id} belongs to dataset {aset.dataset_id}, not {dataset.id}",
        )
    masks = list(
        session.scalars(
            select(Mask)
            .join(Case, Case.id == Mask.case_id)
            .where(Mask.annotation_set_id == aset.id)
            .order_by(Case.name)
        )
    )
    config = with_set_classes(session, config, aset)
    _check_masks(masks, config, aset)
    audit = Audit(
        dataset_id=dataset.id,
        annotation_set_id=aset.id,
        created_by_key_id=principal.key_id,
        parameters=config.to_dict(),
        status=AuditStatus.queued,
    )
    session.add(audit)
    session.flush()
    session.add_all(AuditMask(audit_id=audit.id, mask_id=m.id) for m in masks)
    session.commit()
    try:
        task_id = enqueue(audit.id)
    except Exception as exc:  # any broker failure: the audit must not stay queued forever
        message = f"the task queue refused the audit: {exc}"
        compare_and_set(
            session,
            audit.id,
            expect=[AuditStatus.queued],
            to=AuditStatus.failed,
            error_code=ErrorCode.BROKER_UNAVAILABLE,
            error_message=message,
            finished_at=utcnow(),
        )
        session.commit()
        raise Unavailable(
            ErrorCode.BROKER_UNAVAILABLE, f"audit {audit.id} could not be queued; {message}"
        ) from exc
    audit.task_id = task_id
    session.commit()
    return audit


def with_set_classes(session: Session, config: AuditConfig, aset: AnnotationSet) -> AuditConfig:
    """The audit's config with the set's classes (the one place the engine gets them from the
    set). A DICOM set's are left to the engine, which numbers and names its segments itself
    (their names were matched to the set's at upload). Parameters that declare other classes
    are refused (422 ``invalid_parameters``).
    """
    classes = dict(aset.classes or {})
    if config.classes is not None and config.classes != classes:
        raise Invalid(
            ErrorCode.INVALID_PARAMETERS,
            f"parameters.classes {config.classes} differ from annotation set {aset.id}'s "
            f"classes {classes}; classes are declared on the annotation set",
        )
    if not classes or is_dicom_dataset(session, aset.dataset_id):
        return config
    try:
        return dataclasses.replace(config, classes=classes)
    except ValueError as exc:
        raise Invalid(ErrorCode.INVALID_PARAMETERS, str(exc)) from None


def _check_masks(masks: list[Mask], config: AuditConfig, aset: AnnotationSet) -> None:
    """What the engine would refuse, refused now, while the caller is still listening."""
    limit = config.class_limit if config.class_limit is not None else config.max_classes
    try:
        checks.check_case_count(
            len(masks), min_cases=config.min_cases, what=f"annotation set {aset.id} has masks for"
        )
        checks.check_foreground(max((m.max_label for m in masks), default=0))
    except InputError as exc:
        raise ServiceError.invalid_input(exc) from None
    for mask in masks:
        try:
            checks.check_label_limit(
                mask.max_label,
                limit=limit,
                explicit=config.class_limit is not None,
                name=mask.file.name,
            )
        except InputError as exc:
            raise ServiceError.invalid_input(exc, file=mask.file.name) from None


def get_audit(session: Session, project_id: int, audit_id: int) -> Audit:
    audit = session.scalar(
        select(Audit)
        .join(Dataset, Dataset.id == Audit.dataset_id)
        .where(Audit.id == audit_id, Dataset.project_id == project_id)
    )
    if audit is None:
        raise NotFound(ErrorCode.NOT_FOUND, f"no audit {audit_id} in this project")
    return audit


def list_audits(
    session: Session,
    project_id: int,
    *,
    dataset_id: int | None = None,
    status: AuditStatus | None = None,
    limit: int,
    offset: int,
) -> Page[Audit]:
    query = (
        select(Audit)
        .join(Dataset, Dataset.id == Audit.dataset_id)
        .where(Dataset.project_id == project_id)
        .order_by(Audit.id.desc())
    )
    if dataset_id is not None:
        query = query.where(Audit.dataset_id == dataset_id)
    if status is not None:
        query = query.where(Audit.status == status.value)
    return paginate(session, query, limit=limit, offset=offset)


def count_cases(session: Session, audit: Audit) -> int:
    query = select(func.count()).where(AuditMask.audit_id == audit.id)
    return int(session.scalar(query) or 0)


def cancel_audit(session: Session, audit: Audit) -> Audit:
    """Cancel a queued or running audit. A running worker notices at its next progress report
    (which then fails its compare-and-set) and stops; its results are never stored. Commits.
    """
    moved = compare_and_set(
        session,
        audit.id,
        expect=[AuditStatus.queued, AuditStatus.running],
        to=AuditStatus.cancelled,
        finished_at=utcnow(),
    )
    session.commit()
    session.refresh(audit)
    if not moved:
        raise Conflict(
            ErrorCode.AUDIT_FINISHED,
            f"audit {audit.id} is already {audit.status}; nothing to cancel",
        )
    return audit
