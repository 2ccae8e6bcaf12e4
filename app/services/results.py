"""Reading an audit's results: pages of scores, one case, its files, the export, the history."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.db.enums import AuditStatus
from app.db.tables import Audit, Case, Dataset, ResultRow, StoredFile
from app.errors import Conflict, NotFound
from app.services import listing
from app.services.pages import Page
from app.services.result_rows import RUN_KEY, SUMMARY, public_summary
from app.storage import Store
from imaging import layout
from imaging.classes import names_by_value
from imaging.errors import ErrorCode
from imaging.formats import split_name
from models import outputs
from models.results import CaseResult, SliceResult

FileKind = Literal["cleansed", "pseudo_label", "issue_map"]
SORTS: dict[str, InstrumentedAttribute[Any]] = {
    "noise_score": ResultRow.noise_score,
    "rank": ResultRow.rank,
    "dice_gap": ResultRow.dice_gap,
    "changed_fraction": ResultRow.changed_fraction,
    "case": Case.name,
}


def rendered_page(
    session: Session,
    audit: Audit | listing.SettledAudit,
    query: listing.Query,
    render: Callable[[ListedResult], bytes],
) -> tuple[list[bytes], int]:
    """``query``'s page of the audit's per-case results, each as ``render`` writes it, and how
    many results match. ``query.sort`` is a key of ``SORTS``, ``-`` first for descending; ties
    are broken by case name so that pages never overlap. A settled audit's page is picked in
    memory and its rows kept (``app.services.listing``); any other's by SQL.
    """
    if isinstance(audit, Audit) and not listing.is_settled(audit):
        page = sql_page(session, audit, query)
        return [render(r) for r in page.items], page.total
    database = listing.database_of(session)
    ids, total = listing.order_of(session, audit, SORTS).page(query)
    rows = listing.kept_rows(database, audit, ids)
    missing = [i for i, row in zip(ids, rows, strict=True) if row is None]
    if missing:
        found = {
            row.id: ListedResult(**_listed(row._mapping))
            for row in session.execute(
                select(ResultRow.id, *_LISTED_COLUMNS, Case.name.label("case_name"))
                .join(Case, Case.id == ResultRow.case_id)
                .where(ResultRow.id.in_(missing))
            )
        }
        if len(found) < len(missing):  # deleted since its order was read (by another process)
            raise NotFound(ErrorCode.NOT_FOUND, f"audit {audit.id} has been deleted")
        for i in missing:
            listing.keep_row(database, audit, i, data := render(found[i]))
            rows[ids.index(i)] = data
    return [r for r in rows if r is not None], total


def sql_page(session: Session, audit: Audit, query: listing.Query) -> Page[ListedResult]:
    """``query``'s page ordered, filtered and counted by the database."""
    column = SORTS[query.sort.removeprefix("-")]
    order = (column.desc() if query.sort.startswith("-") else column.asc(), Case.name)
    where = result_filters(
        audit, flagged=query.flagged, min_score=query.min_score, max_score=query.max_score
    )
    # The page's keys first, from narrow rows in index order (each sort has its index; the
    # audit's cases are its dataset's, which lets "case" walk the (dataset_id, name) key), then
    # the columns the listing shows of those rows: no row becomes an ORM object.
    keys = (
        select(ResultRow.id)
        .join(Case, (Case.id == ResultRow.case_id) & (Case.dataset_id == audit.dataset_id))
        .where(*where)
        .order_by(*order)
        .limit(query.limit)
        .offset(query.offset)
    )
    page_query = (
        select(*_LISTED_COLUMNS, Case.name.label("case_name"))
        .join(Case, Case.id == ResultRow.case_id)
        .where(ResultRow.id.in_(keys.scalar_subquery()))
        .order_by(*order)
    )
    items = [ListedResult(**row._mapping) for row in session.execute(page_query)]
    count = session.scalar(select(func.count()).select_from(ResultRow).where(*where))
    return Page(items, int(count or 0), query.limit, query.offset)


def _listed(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id"}


@dataclass(frozen=True, slots=True)
class ListedResult:
    """The columns of a result that the case listing shows (``ResultOut.of`` reads them)."""

    case_id: int
    case_name: str
    rank: int
    noise_score: float
    flagged: bool
    ce: float
    dice_gap: float
    dice: list[float]
    changed_fraction: float
    issue_fraction: float
    model_uncertain: bool | None
    figures: dict[str, float] | None
    slices: list[dict[str, Any]] | None


_LISTED_COLUMNS = [
    getattr(ResultRow, f.name) for f in fields(ListedResult) if f.name != "case_name"
]


def result_filters(
    audit: Audit,
    *,
    flagged: bool | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
) -> list[ColumnElement[bool]]:
    """The conditions that pick the audit's results by flag and score range."""
    where: list[ColumnElement[bool]] = [ResultRow.audit_id == audit.id]
    if flagged is not None:
        where.append(ResultRow.flagged.is_(flagged))
    if min_score is not None:
        where.append(ResultRow.noise_score >= min_score)
    if max_score is not None:
        where.append(ResultRow.noise_score <= max_score)
    return where


def results_query(
    audit: Audit,
    *,
    flagged: bool | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
) -> Select[ResultRow]:
    """The audit's results (joined to their cases), filtered, not yet ordered."""
    where = result_filters(audit, flagged=flagged, min_score=min_score, max_score=max_score)
    return select(ResultRow).join(Case, Case.id == ResultRow.case_id).where(*where)


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


# The stored masks of a result and their folders in the export.
_EXPORTED = (
    (ResultRow.cleansed_file_id, layout.CLEANSED),
    (ResultRow.pseudo_label_file_id, layout.PSEUDO),
    (ResultRow.issue_map_file_id, layout.ISSUE_MAPS),
)


def export_zip(session: Session, store: Store, audit: Audit, dest: Path) -> Path:
    """Write ``dest/audit-<id>.zip``: what the audit made, as the engine lays out its folder.

    ``scores.csv``, ``slices.csv`` (volumes), ``run.json`` (the run's record: versions, timings,
    calibration, per-epoch history), ``summary.json`` (the audit's id, dates, engine version
    and counts) and ``cleansed/``, ``pseudo_labels/``, ``issue_maps/`` with ``<case><ext>``.
    """
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its results are exported once it succeeded",
        )
    rows = session.execute(
        select(ResultRow, Case.name)
        .join(Case, Case.id == ResultRow.case_id)
        .where(ResultRow.audit_id == audit.id)
        .order_by(ResultRow.rank, Case.name)
    ).all()
    scores = [as_case_result(r, name) for r, name in rows]
    num_classes = max((len(s.dice) for s in scores), default=1) + 1
    outputs.write_scores(
        dest / layout.SCORES, scores, num_classes, class_names=class_names_of(audit)
    )
    written = [layout.SCORES]
    if any(s.slices for s in scores):
        outputs.write_slices(dest / layout.SLICES, scores)
        written.append(layout.SLICES)
    outputs.write_json(dest / layout.RUN, {"audit_id": audit.id, **run_record(audit)})
    outputs.write_json(dest / SUMMARY, audit_summary(audit))
    written += [layout.RUN, SUMMARY]
    file_ids = [getattr(r, c.key) for r, _ in rows for c, _ in _EXPORTED]
    stored = {
        f.id: f
        for f in session.scalars(
            select(StoredFile).where(StoredFile.id.in_(set(file_ids) - {None}))
        )
    }
    archive = dest / f"audit-{audit.id}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in written:
            zf.write(dest / name, name)
        for r, case in rows:
            for column, folder in _EXPORTED:
                file = stored.get(getattr(r, column.key))
                if file is not None:
                    ext = split_name(Path(file.name))[1]
                    zf.write(store.path(file.sha256), f"{folder}/{case}{ext}")
    return archive


def as_case_result(row: ResultRow, name: str) -> CaseResult:
    """A stored result as the engine's record (without its masks' paths)."""
    return CaseResult(
        case=name,
        noise_score=row.noise_score,
        flagged=row.flagged,
        ce=row.ce,
        dice_gap=row.dice_gap,
        dice=tuple(row.dice),
        changed_fraction=row.changed_fraction,
        issue_fraction=row.issue_fraction,
        figures=row.figures or {},
        model_uncertain=bool(row.model_uncertain),
        slices=tuple(SliceResult(**s) for s in row.slices or ()),
    )


def audit_classes(audit: Audit) -> dict[str, int]:
    """The audit's classes ``{name: value}``: as the engine named them (its summary), else as
    its parameters declared them (``{}`` when neither says).
    """
    found = (audit.summary or {}).get("classes") or audit.parameters.get("classes") or {}
    return {str(n): int(v) for n, v in found.items()}


def class_names_of(audit: Audit) -> dict[int, str]:
    """``{value: name}`` of the audit's classes, for ``models.outputs`` and the API."""
    return names_by_value(audit_classes(audit))


def run_record(audit: Audit) -> dict[str, Any]:
    """What the worker kept of the run's ``run.json`` (``{}`` before it succeeded)."""
    record = (audit.summary or {}).get(RUN_KEY)
    return dict(record) if isinstance(record, dict) else {}


def run_history(audit: Audit) -> list[dict[str, Any]]:
    """The run's per-epoch history (run.json's ``history``); 409 until the audit succeeded."""
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its history is kept once it succeeded",
        )
    history = run_record(audit).get("history")
    return list(history) if isinstance(history, list) else []


def audit_summary(audit: Audit) -> dict[str, Any]:
    """The audit's id, dates and engine version with its summary (``summary.json``)."""
    return {
        "audit_id": audit.id,
        "dataset_id": audit.dataset_id,
        "annotation_set_id": audit.annotation_set_id,
        "created_at": audit.created_at.isoformat(),
        "finished_at": None if audit.finished_at is None else audit.finished_at.isoformat(),
        **public_summary(audit.summary),
    }


def case_image(
    session: Session, store: Store, audit: Audit, case_name: str
) -> tuple[Path, StoredFile]:
    """The stored image of one of the audit's cases (a DICOM series as its zip)."""
    result = get_result(session, audit, case_name)
    row = session.get(StoredFile, result.case.image_file_id)
    if row is None or not store.has(row.sha256):
        raise NotFound(
            ErrorCode.NOT_FOUND, f"audit {audit.id} has no stored image for '{case_name}'"
        )
    return store.path(row.sha256), row


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
