"""What the QA dashboard (``/ui``) reads beyond the API's own services: the project's overview,
results filtered by review status and sorted by any figure, the review queue and counts.

Built on ``results.results_query`` and ``reviews`` so that a filter or a review rule stays
defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.db.tables import (
    AnnotationSet,
    Audit,
    AuditMask,
    Case,
    Dataset,
    Mask,
    ResultRow,
    Review,
    StoredFile,
)
from app.errors import Invalid
from app.services.annotations import count_masks
from app.services.pages import Page, paginate
from app.services.results import SORTS, get_result, results_query
from imaging.errors import ErrorCode
from models.figure_names import FIGURES

ReviewState = Literal["reviewed", "unreviewed"]
# Columns the table sorts by: the API's sorts, the two fractions, and every figure by name.
COLUMNS: dict[str, Any] = {
    **SORTS,
    "changed_fraction": ResultRow.changed_fraction,
    "issue_fraction": ResultRow.issue_fraction,
}


@dataclass(frozen=True)
class SetLine:
    aset: AnnotationSet
    masks: int
    audits: list[Audit]


@dataclass(frozen=True)
class DatasetLine:
    dataset: Dataset
    cases: int
    sets: list[SetLine]


def overview(session: Session, project_id: int) -> list[DatasetLine]:
    """The project's datasets with case counts, their annotation sets with mask counts and the
    audits of each set (newest first).
    """
    found = []
    datasets = session.scalars(
        select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.id)
    )
    for dataset in datasets:
        cases = session.scalar(select(func.count()).where(Case.dataset_id == dataset.id)) or 0
        sets = session.scalars(
            select(AnnotationSet)
            .where(AnnotationSet.dataset_id == dataset.id)
            .order_by(AnnotationSet.id)
        )
        lines = [
            SetLine(
                aset,
                count_masks(session, aset),
                list(
                    session.scalars(
                        select(Audit)
                        .where(Audit.annotation_set_id == aset.id)
                        .order_by(Audit.id.desc())
                    )
                ),
            )
            for aset in sets
        ]
        found.append(DatasetLine(dataset, int(cases), lines))
    return found


def _reviewed(audit: Audit) -> Any:
    """The SQL condition "the result's case has a review in ``audit``"."""
    return exists().where(Review.audit_id == audit.id, Review.case_id == ResultRow.case_id)


def result_page(
    session: Session,
    audit: Audit,
    *,
    sort: str,
    flagged: bool | None,
    review: ReviewState | None,
    min_score: float | None,
    max_score: float | None,
    limit: int,
    offset: int,
) -> Page[ResultRow]:
    """A page of the audit's results, as ``results.list_results`` and by review status; ``sort``
    names a column of ``COLUMNS`` or a figure of ``FIGURES`` (``-`` first: descending; cases
    without the figure last).
    """
    name = sort.removeprefix("-")
    if name in COLUMNS:
        key: Any = COLUMNS[name]
    elif name in FIGURES:
        key = ResultRow.figures[name].as_float()
    else:
        raise Invalid(
            ErrorCode.INVALID_PARAMETERS,
            f"cannot sort by '{name}'; sort by one of {', '.join([*COLUMNS, *FIGURES])}",
        )
    order = key.desc().nulls_last() if sort.startswith("-") else key.asc().nulls_last()
    query = results_query(audit, flagged=flagged, min_score=min_score, max_score=max_score)
    if review == "reviewed":
        query = query.where(_reviewed(audit))
    elif review == "unreviewed":
        query = query.where(~_reviewed(audit))
    return paginate(session, query.order_by(order, Case.name), limit=limit, offset=offset)


@dataclass(frozen=True)
class ReviewCount:
    flagged: int
    reviewed: int  # of the flagged


def review_count(session: Session, audit: Audit) -> ReviewCount:
    """How many of the audit's flagged cases have at least one review."""
    flagged = results_query(audit, flagged=True).subquery()
    total = session.scalar(select(func.count()).select_from(flagged)) or 0
    reviewed = results_query(audit, flagged=True).where(_reviewed(audit)).subquery()
    done = session.scalar(select(func.count()).select_from(reviewed)) or 0
    return ReviewCount(int(total), int(done))


def review_queue(session: Session, audit: Audit) -> list[tuple[str, int]]:
    """The flagged cases with no review yet, by rank: (name, rank) as a reviewer goes through."""
    query = (
        select(Case.name, ResultRow.rank)
        .join(ResultRow, ResultRow.case_id == Case.id)
        .where(ResultRow.audit_id == audit.id, ResultRow.flagged.is_(True), ~_reviewed(audit))
        .order_by(ResultRow.rank, Case.name)
    )
    return [(name, int(rank)) for name, rank in session.execute(query)]


def scores(session: Session, audit: Audit) -> list[tuple[float, bool]]:
    """Every result's noise score and flag, for the histogram."""
    rows = session.execute(
        select(ResultRow.noise_score, ResultRow.flagged).where(ResultRow.audit_id == audit.id)
    )
    return [(float(s), bool(f)) for s, f in rows]


def layer_file(session: Session, audit: Audit, case_name: str, layer: str) -> StoredFile | None:
    """The stored file a case's ``layer`` (image, given, cleansed, issue) is drawn from, in one
    query (None when the audit stored none); 404 when the audit has no such case.
    """
    if layer == "given":
        query = (
            select(StoredFile)
            .join(Mask, Mask.file_id == StoredFile.id)
            .join(AuditMask, AuditMask.mask_id == Mask.id)
            .join(Case, Case.id == Mask.case_id)
            .where(AuditMask.audit_id == audit.id, Case.name == case_name)
        )
    else:
        column = {
            "image": Case.image_file_id,
            "cleansed": ResultRow.cleansed_file_id,
            "issue": ResultRow.issue_map_file_id,
        }[layer]
        query = (
            select(StoredFile)
            .join(ResultRow, ResultRow.audit_id == audit.id)
            .join(Case, Case.id == ResultRow.case_id)
            .where(Case.name == case_name, StoredFile.id == column)
        )
    found = session.scalar(query)
    if found is None:
        get_result(session, audit, case_name)  # 404 for a case the audit has not
    return found
