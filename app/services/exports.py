"""Masks out as a zip, in their own format, laid out as a MONAI Label datastore's labels:
``labels/<tag>/<case><ext>`` (tag ``original``, ``cleansed`` or ``final``) and ``manifest.csv``
with one row per case: where its mask came from and who settled it when.

The files are the stored ones, byte for byte: PNG and TIFF, NIfTI and NRRD with their headers
(so their geometry), DICOM SEG or RTSTRUCT objects that reference their series.
"""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus, LabelTag, MaskSource
from app.db.tables import (
    AnnotationSet,
    Audit,
    Case,
    Correction,
    Mask,
    Resolution,
    ResolvedCase,
    ResultRow,
    Review,
    StoredFile,
)
from app.errors import Conflict, NotFound
from app.services.reviews import Word, latest_words
from app.storage import Store
from imaging.errors import ErrorCode
from imaging.formats import split_name

MANIFEST = "manifest.csv"
COLUMNS = ("case", "file", "source", "decision", "reviewer", "time", "settled_by")


@dataclass(frozen=True)
class Entry:
    """One case of an export: its manifest row, and the stored file (None: excluded)."""

    case: str
    source: str
    stored: StoredFile | None
    decision: str = ""
    reviewer: str = ""
    time: str = ""
    settled_by: str = ""  # "decision", "correction", "policy:<name>" or "" (as uploaded)

    def member(self, tag: LabelTag) -> str:
        if self.stored is None:
            return ""
        return f"labels/{tag.value}/{self.case}{split_name(Path(self.stored.name))[1]}"


def set_entries(session: Session, aset: AnnotationSet) -> list[Entry]:
    """The set's cases by name: as uploaded, or as resolved (excluded cases included)."""
    resolution = session.scalar(select(Resolution).where(Resolution.annotation_set_id == aset.id))
    if resolution is None:
        masks = session.scalars(
            select(Mask)
            .join(Case, Case.id == Mask.case_id)
            .where(Mask.annotation_set_id == aset.id)
            .order_by(Case.name)
        )
        return [
            Entry(m.case.name, MaskSource.original.value, m.file, time=_time(m.created_at))
            for m in masks
        ]
    rows = session.execute(
        select(ResolvedCase, Mask, Review, Correction)
        .join(Case, Case.id == ResolvedCase.case_id)
        .outerjoin(Mask, Mask.id == ResolvedCase.mask_id)
        .outerjoin(Review, Review.id == ResolvedCase.review_id)
        .outerjoin(Correction, Correction.id == ResolvedCase.correction_id)
        .where(ResolvedCase.resolution_id == resolution.id)
        .order_by(Case.name)
    ).all()
    return [_resolved(resolution, *row) for row in rows]


def _resolved(
    resolution: Resolution,
    row: ResolvedCase,
    mask: Mask | None,
    review: Review | None,
    correction: Correction | None,
) -> Entry:
    stored = mask.file if mask is not None else None
    decision = review.decision if review is not None else ""
    if correction is not None:
        who, when, how = correction.author, correction.created_at, "correction"
    elif review is not None and _decided(review, row):
        who, when, how = review.reviewer, review.created_at, "decision"
    else:
        who, when = resolution.resolved_by, resolution.created_at
        how = f"policy:{resolution.policy}"
    return Entry(row.case.name, row.source, stored, decision, who, _time(when), how)


def _decided(review: Review, row: ResolvedCase) -> bool:
    """Whether the decision itself chose the source (needs_rework leaves it to the policy)."""
    return (review.decision, row.source) in {
        ("accept_cleansed", MaskSource.cleansed),
        ("keep_original", MaskSource.original),
    }


def cleansed_entries(session: Session, audit: Audit) -> list[Entry]:
    """The audit's cleansed masks by case name, with each case's latest word."""
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its cleansed masks are there once it succeeded",
        )
    rows = session.execute(
        select(ResultRow, StoredFile)
        .join(Case, Case.id == ResultRow.case_id)
        .join(StoredFile, StoredFile.id == ResultRow.cleansed_file_id)
        .where(ResultRow.audit_id == audit.id)
        .order_by(Case.name)
    ).all()
    words = latest_words(session, audit)
    entries = []
    for result, stored in rows:
        word = words.get(result.case_id, Word())
        review = word.review
        entries.append(
            Entry(
                result.case.name,
                MaskSource.cleansed.value,
                stored,
                review.decision if review is not None else "",
                review.reviewer if review is not None else "",
                _time(review.created_at if review is not None else result.updated_at),
                "decision" if review is not None else "",
            )
        )
    return entries


def _time(value: dt.datetime) -> str:
    return value.isoformat()


def write_zip(store: Store, entries: list[Entry], tag: LabelTag, dest: Path) -> Path:
    """Write ``dest`` (a zip): each entry's file at its member path, and ``manifest.csv``."""
    if not entries:
        raise NotFound(ErrorCode.NOT_FOUND, "there are no masks to export")
    manifest = dest.parent / MANIFEST
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for e in entries:
            row = (e.case, e.member(tag), e.source, e.decision, e.reviewer, e.time, e.settled_by)
            writer.writerow(row)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(manifest, MANIFEST)
        for entry in entries:
            if entry.stored is not None:
                path = store.path(entry.stored.sha256)
                if not path.is_file():
                    raise NotFound(
                        ErrorCode.NOT_FOUND, f"the stored mask of '{entry.case}' is missing"
                    )
                zf.write(path, entry.member(tag))
    return dest


def export_set(session: Session, store: Store, aset: AnnotationSet, folder: Path) -> Path:
    """``folder/set-<id>.zip`` of the set's masks under its tag, with the manifest."""
    entries = set_entries(session, aset)
    return write_zip(store, entries, LabelTag(aset.tag), folder / f"set-{aset.id}.zip")


def export_cleansed(session: Session, store: Store, audit: Audit, folder: Path) -> Path:
    """``folder/audit-<id>-cleansed.zip``: the audit's cleansed masks, tag ``cleansed``."""
    entries = cleansed_entries(session, audit)
    return write_zip(store, entries, LabelTag.cleansed, folder / f"audit-{audit.id}-cleansed.zip")
