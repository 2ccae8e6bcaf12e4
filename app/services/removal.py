"""Deleting datasets, annotation sets and audits, and reclaiming the storage they used.

A deletion removes the rows that belong to the resource (its cases, masks, audits, results,
reviews and corrections; a resolved set's lineage; a dataset's comparisons), then every ``files``
row that no remaining row names, in one transaction; after the commit, each blob whose content no
``files`` row names any more is removed from the store. Any other row that still refers to the
resource (a comparison of the set, a set resolved from the audit) makes the deletion a 409, with
nothing removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Column, ColumnElement, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.enums import AuditStatus
from app.db.tables import (
    AnnotationSet,
    Audit,
    AuditMask,
    Case,
    Comparison,
    ComparisonRow,
    ComparisonSet,
    Correction,
    Dataset,
    Mask,
    Resolution,
    ResolvedCase,
    ResultRow,
    Review,
    StoredFile,
)
from app.errors import Conflict, NotFound
from app.runs import remove_run_folders
from app.storage import Store
from imaging.errors import ErrorCode

_RESULT_FILES = (
    ResultRow.cleansed_file_id,
    ResultRow.pseudo_label_file_id,
    ResultRow.issue_map_file_id,
)


def has_audits(session: Session, *, dataset_id: int, annotation_set_id: int | None = None) -> bool:
    """Whether an audit used the dataset (or, given, its annotation set)."""
    query = exists().where(Audit.dataset_id == dataset_id)
    if annotation_set_id is not None:
        query = query.where(Audit.annotation_set_id == annotation_set_id)
    return bool(session.scalar(select(query)))


def delete_audit(session: Session, store: Store, audit: Audit) -> int:
    """Delete a finished audit with its results and reviews; returns the blobs removed. Commits.

    A queued or running audit is a 409: cancel it first.
    """
    if not AuditStatus(audit.status).finished:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; cancel it (POST /v1/audits/{audit.id}/cancel) "
            "before deleting it",
        )
    what = f"audit {audit.id}"
    with _referenced(session, what):
        files = _audit_rows(session, [audit.id])
    return _commit(session, store, what, files, [audit.id])


def delete_annotation_set(session: Session, store: Store, aset: AnnotationSet) -> int:
    """Delete an annotation set, its masks and the audits of it; returns the blobs removed.
    Commits. A queued or running audit of the set is a 409.
    """
    audit_ids = _finished_audits(session, Audit.annotation_set_id == aset.id)
    what = f"annotation set {aset.id}"
    with _referenced(session, what):
        files = _audit_rows(session, audit_ids)
        _resolution_rows(session, Resolution.annotation_set_id == aset.id)  # its own lineage
        files |= set(session.scalars(select(Mask.file_id).where(Mask.annotation_set_id == aset.id)))
        session.execute(delete(Mask).where(Mask.annotation_set_id == aset.id))
        session.execute(delete(AnnotationSet).where(AnnotationSet.id == aset.id))
    return _commit(session, store, what, files, audit_ids)


def delete_dataset(session: Session, store: Store, dataset: Dataset) -> int:
    """Delete a dataset with everything in it (cases, annotation sets, masks, audits); returns
    the blobs removed. Commits. A queued or running audit of the dataset is a 409.
    """
    audit_ids = _finished_audits(session, Audit.dataset_id == dataset.id)
    what = f"dataset {dataset.id}"
    with _referenced(session, what):
        set_ids = select(AnnotationSet.id).where(AnnotationSet.dataset_id == dataset.id)
        _resolution_rows(session, Resolution.annotation_set_id.in_(set_ids))
        _comparison_rows(session, Comparison.dataset_id == dataset.id)
        files = _audit_rows(session, audit_ids)
        files |= set(
            session.scalars(select(Mask.file_id).where(Mask.annotation_set_id.in_(set_ids)))
        )
        files |= set(
            session.scalars(select(Case.image_file_id).where(Case.dataset_id == dataset.id))
        )
        session.execute(delete(Mask).where(Mask.annotation_set_id.in_(set_ids)))
        session.execute(delete(AnnotationSet).where(AnnotationSet.dataset_id == dataset.id))
        session.execute(delete(Case).where(Case.dataset_id == dataset.id))
        session.execute(delete(Dataset).where(Dataset.id == dataset.id))
    return _commit(session, store, what, files, audit_ids)


def delete_mask(session: Session, store: Store, aset: AnnotationSet, case: str) -> tuple[int, int]:
    """Delete one case's mask from a set that no audit has used, so that a corrected one can
    be uploaded in its place; returns (the mask's id, the blobs removed). Commits. A set an
    audit used keeps its masks (409): its audits refer to them.
    """
    if has_audits(session, dataset_id=aset.dataset_id, annotation_set_id=aset.id):
        raise Conflict(
            ErrorCode.STILL_REFERENCED,
            f"annotation set {aset.id} has audits, which keep the masks they checked; correct "
            f"'{case}' in the review loop (POST /v1/audits/{{id}}/cases/{case}/corrections) or "
            "upload the re-annotation as a new set",
        )
    query = select(Mask).join(Case).where(Mask.annotation_set_id == aset.id, Case.name == case)
    mask = session.scalar(query)
    if mask is None:
        raise NotFound(
            ErrorCode.NOT_FOUND, f"annotation set {aset.id} has no mask for case '{case}'"
        )
    mask_id, file_id = mask.id, mask.file_id
    what = f"the mask of case '{case}' in annotation set {aset.id}"
    with _referenced(session, what):
        session.execute(delete(Mask).where(Mask.id == mask_id))
    return mask_id, _commit(session, store, what, {file_id}, [])


@contextmanager
def _referenced(session: Session, what: str) -> Iterator[None]:
    """A row that still refers to what is being deleted: roll back, 409 with nothing removed."""
    try:
        yield
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            ErrorCode.STILL_REFERENCED,
            f"{what} is still referred to by another record (a comparison of its sets, or a "
            "resolved set made from it, for example); delete that first",
        ) from None


def _resolution_rows(session: Session, where: ColumnElement[bool]) -> None:
    """Delete the lineage of resolved sets (the sets themselves are the caller's)."""
    ids = select(Resolution.id).where(where)
    session.execute(delete(ResolvedCase).where(ResolvedCase.resolution_id.in_(ids)))
    session.execute(delete(Resolution).where(where))


def _comparison_rows(session: Session, where: ColumnElement[bool]) -> None:
    """Delete comparisons with their rows (their consensus sets are annotation sets)."""
    ids = select(Comparison.id).where(where)
    for table in (ComparisonRow, ComparisonSet):
        session.execute(delete(table).where(table.comparison_id.in_(ids)))
    session.execute(delete(Comparison).where(where))


def _finished_audits(session: Session, where: ColumnElement[bool]) -> list[int]:
    rows = session.execute(select(Audit.id, Audit.status).where(where)).all()
    busy = [row.id for row in rows if not AuditStatus(row.status).finished]
    if busy:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {busy[0]} of it is still queued or running; cancel it before deleting",
        )
    return [row.id for row in rows]


def _audit_rows(session: Session, audit_ids: list[int]) -> set[int]:
    """Delete the audits' own rows (not yet committed); returns the file ids they named."""
    if not audit_ids:
        return set()
    files: set[int] = set()
    for column in _RESULT_FILES:
        query = select(column).where(ResultRow.audit_id.in_(audit_ids), column.is_not(None))
        files |= {f for f in session.scalars(query) if f is not None}
    files |= set(
        session.scalars(select(Correction.file_id).where(Correction.audit_id.in_(audit_ids)))
    )
    for table in (Correction, Review, ResultRow, AuditMask):
        session.execute(delete(table).where(table.audit_id.in_(audit_ids)))
    session.execute(delete(Audit).where(Audit.id.in_(audit_ids)))
    return files


def _file_references() -> list[Column[int]]:
    """Every column of every table that names a ``files`` row (other modules' tables too)."""
    return [
        column
        for table in Base.metadata.tables.values()
        for column in table.columns
        for fk in column.foreign_keys
        if fk.column.table.name == StoredFile.__tablename__
    ]


def _drop_unreferenced(session: Session, file_ids: Iterable[int]) -> set[str]:
    """Delete the ``files`` rows among ``file_ids`` that nothing names now; their checksums."""
    ids = sorted(set(file_ids))
    if not ids:
        return set()
    still = {
        value
        for column in _file_references()
        for value in session.scalars(select(column).where(column.in_(ids)))
    }
    gone = [i for i in ids if i not in still]
    shas = set(session.scalars(select(StoredFile.sha256).where(StoredFile.id.in_(gone))))
    session.execute(delete(StoredFile).where(StoredFile.id.in_(gone)))
    return shas


def _commit(
    session: Session, store: Store, what: str, file_ids: set[int], audit_ids: list[int]
) -> int:
    """Commit the deletion, then reclaim the blobs nothing names now and the deleted audits'
    run folders; returns the blobs removed."""
    try:
        shas = _drop_unreferenced(session, file_ids)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            ErrorCode.STILL_REFERENCED,
            f"{what} is still referred to by another record (a comparison, for example); "
            "delete that first",
        ) from None
    removed = 0
    for sha in shas:
        if not session.scalar(select(exists().where(StoredFile.sha256 == sha))):
            store.discard(sha)
            removed += 1
    remove_run_folders(store, audit_ids)
    return removed
