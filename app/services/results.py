"""Reading an audit's results: pages of scores, one case, its files, the export, the history."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.db.enums import AuditStatus
from app.db.tables import Audit, Case, Dataset, ResultRow, StoredFile
from app.errors import Conflict, NotFound
from app.services.pages import Page, paginate
from app.storage import Store
from imaging import layout
from imaging.errors import ErrorCode
from imaging.formats import split_name
from models import outputs
from models.results import CaseResult

FileKind = Literal["cleansed", "pseudo_label", "issue_map"]
SORTS: dict[str, InstrumentedAttribute[Any]] = {
    "noise_score": ResultRow.noise_score,
    "rank": ResultRow.rank,
    "dice_gap": ResultRow.dice_gap,
    "changed_fraction": ResultRow.changed_fraction,
    "case": Case.name,
}


def list_results(
    session: Session,
    audit: Audit,
    *,
    flagged: bool | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    sort: str = "-noise_score",
    limit: int,
    offset: int,
) -> Page[ResultRow]:
    """A page of the audit's per-case results. ``sort`` is a key of ``SORTS``, ``-`` first for
    descending; ties are broken by case name so that pages never overlap.
    """
    column = SORTS[sort.removeprefix("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    query = (
        select(ResultRow)
        .join(Case, Case.id == ResultRow.case_id)
        .where(ResultRow.audit_id == audit.id)
        .order_by(order, Case.name)
    )
    if flagged is not None:
        query = query.where(ResultRow.flagged.is_(flagged))
    if min_score is not None:
        query = query.where(ResultRow.noise_score >= min_score)
    if max_score is not None:
        query = query.where(ResultRow.noise_score <= max_score)
    return paginate(session, query, limit=limit, offset=offset)


def get_result(session: Session, audit: Audit, case_name: str) -> ResultRow:
    result = session.scalar(
        select(ResultRow)
        .join(Case, Case.id == ResultRow.case_id)
        .where(ResultRow.audit_id == audit.id, Case.name == case_name)
    )
    if result is None:
        raise NotFound(
            ErrorCode.NOT_FOUND,
            f"audit {audit.id} ({audit.status}) has no result for a case named '{case_name}'",
        )
    return result


def result_file(
    session: Session, store: Store, audit: Audit, case_name: str, kind: FileKind
) -> tuple[Path, StoredFile]:
    """The stored file of one case's cleansed mask, pseudo label or issue map."""
    result = get_result(session, audit, case_name)
    file_id = getattr(result, f"{kind}_file_id")
    row = session.get(StoredFile, file_id) if file_id is not None else None
    if row is None or not store.has(row.sha256):
        raise NotFound(ErrorCode.NOT_FOUND, f"audit {audit.id} stored no {kind} for '{case_name}'")
    return store.path(row.sha256), row


def export_zip(session: Session, store: Store, audit: Audit, dest: Path) -> Path:
    """Write ``dest/audit-<id>.zip``: ``scores.csv`` and ``cleansed/<case><ext>`` for all cases."""
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its results are exported once it succeeded",
        )
    rows = session.execute(
        select(ResultRow, Case.name, StoredFile)
        .join(Case, Case.id == ResultRow.case_id)
        .outerjoin(StoredFile, StoredFile.id == ResultRow.cleansed_file_id)
        .where(ResultRow.audit_id == audit.id)
        .order_by(ResultRow.rank, Case.name)
    ).all()
    scores = [
        CaseResult(
            case=name,
            noise_score=r.noise_score,
            flagged=r.flagged,
            ce=r.ce,
            dice_gap=r.dice_gap,
            dice=tuple(r.dice),
            changed_fraction=r.changed_fraction,
            issue_fraction=r.issue_fraction,
            figures=r.figures or {},
            model_uncertain=bool(r.model_uncertain),
        )
        for r, name, _ in rows
    ]
    num_classes = max((len(s.dice) for s in scores), default=1) + 1
    outputs.write_scores(dest / layout.SCORES, scores, num_classes)
    archive = dest / f"audit-{audit.id}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(dest / layout.SCORES, layout.SCORES)
        for _, name, stored in rows:
            if stored is not None:
                ext = split_name(Path(stored.name))[1]
                zf.write(store.path(stored.sha256), f"{layout.CLEANSED}/{name}{ext}")
    return archive


def case_history(session: Session, project_id: int, case_id: int) -> list[tuple[ResultRow, Audit]]:
    """The case's result in every audit that scored it, oldest audit first."""
    case = session.scalar(
        select(Case)
        .join(Dataset, Dataset.id == Case.dataset_id)
        .where(Case.id == case_id, Dataset.project_id == project_id)
    )
    if case is None:
        raise NotFound(ErrorCode.NOT_FOUND, f"no case {case_id} in this project")
    rows = session.execute(
        select(ResultRow, Audit)
        .join(Audit, Audit.id == ResultRow.audit_id)
        .where(ResultRow.case_id == case.id)
        .order_by(Audit.created_at, Audit.id)
    ).all()
    return [(r, a) for r, a in rows]
