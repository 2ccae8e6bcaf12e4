"""Resolving an audit: a new annotation set (tag ``final``) of the dataset, one mask per case as
its decisions and corrections say, with its lineage and each case's source recorded.

Per case, the latest word wins (``reviews.latest_words``): a correction made after the latest
decision gives ``corrected``; ``accept_cleansed`` the audit's cleansed mask; ``keep_original``
the audited mask. A case without a decision, or whose latest is ``needs_rework`` with no
correction since, follows the request's policy: ``keep_original`` (the audited mask),
``accept_flagged`` (the cleansed mask where the audit flagged the case, else the audited one)
or ``exclude`` (left out of the set).

No mask file is written: the set's ``files`` rows name the blobs already stored (the store is
content-addressed), under the case's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus, Decision, LabelTag, MaskSource, Undecided
from app.db.tables import (
    AnnotationSet,
    Audit,
    AuditMask,
    Case,
    Mask,
    Resolution,
    ResolvedCase,
    ResultRow,
    Review,
    StoredFile,
)
from app.errors import Conflict, Invalid, NotFound
from app.services.keys import Principal
from app.services.reviews import Word, latest_words
from app.storage import Store
from imaging.errors import ErrorCode, InputError
from imaging.formats import read_mask, split_name
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG

NAME_LIMIT = 200  # annotation_sets.name


@dataclass(frozen=True)
class Planned:
    """One case of a resolve: where its mask comes from and what settled it."""

    case: Case
    source: MaskSource
    word: Word
    file: StoredFile | None  # None: excluded
    max_label: int


def source_of(word: Word, result: ResultRow, policy: Undecided) -> MaskSource:
    """The mask a case's latest word (or, without one, ``policy``) chooses."""
    if word.correction is not None:
        return MaskSource.corrected
    decision = word.review.decision if word.review is not None else None
    if decision == Decision.accept_cleansed:
        return MaskSource.cleansed
    if decision == Decision.keep_original:
        return MaskSource.original
    if policy == Undecided.exclude:
        return MaskSource.excluded
    if policy == Undecided.accept_flagged and result.flagged:
        return MaskSource.cleansed
    return MaskSource.original


def plan(session: Session, store: Store, audit: Audit, policy: Undecided) -> list[Planned]:
    """Each of the audit's cases, by name, with the mask it resolves to."""
    rows = session.execute(
        select(Mask, ResultRow)
        .join(AuditMask, AuditMask.mask_id == Mask.id)
        .join(Case, Case.id == Mask.case_id)
        .outerjoin(
            ResultRow, (ResultRow.audit_id == audit.id) & (ResultRow.case_id == Mask.case_id)
        )
        .where(AuditMask.audit_id == audit.id)
        .order_by(Case.name)
    ).all()
    words = latest_words(session, audit)
    planned = []
    for mask, result in rows:
        if result is None:  # a succeeded audit scored every case; never drop one quietly
            raise Conflict(
                ErrorCode.NOT_FOUND, f"audit {audit.id} has no result for '{mask.case.name}'"
            )
        word = words.get(mask.case_id, Word())
        source = source_of(word, result, policy)
        file: StoredFile | None = None
        max_label = mask.max_label
        if source == MaskSource.original:
            file = mask.file
        elif source == MaskSource.corrected:
            assert word.correction is not None
            file, max_label = word.correction.file, word.correction.max_label
        elif source == MaskSource.cleansed:
            file = session.get(StoredFile, result.cleansed_file_id or -1)
            if file is None:
                raise Conflict(
                    ErrorCode.NOT_FOUND,
                    f"audit {audit.id} stored no cleansed mask for '{mask.case.name}'; decide "
                    "keep_original for it, or resolve with another policy",
                )
            max_label = _largest_label(store, file, fallback=mask.max_label)
        if file is not None and not store.has(file.sha256):
            raise NotFound(
                ErrorCode.NOT_FOUND, f"the stored {source} mask of '{mask.case.name}' is missing"
            )
        planned.append(Planned(mask.case, source, word, file, max_label))
    return planned


def _largest_label(store: Store, file: StoredFile, *, fallback: int) -> int:
    """The largest class in a stored mask file. A DICOM SEG or RTSTRUCT is read only on its
    series' grid, so it keeps ``fallback`` (the audited mask's): the cleansed mask holds the
    audit's classes.
    """
    if file.format in (DICOM_SEG, DICOM_RTSTRUCT):
        return fallback
    with store.staging() as folder:
        named = folder / file.name  # the readers go by the file's extension
        named.symlink_to(store.path(file.sha256))
        try:
            array = read_mask(named, case=split_name(Path(file.name))[0]).array
        except InputError:
            return fallback
        return int(np.max(array)) if array.size else 0


def default_name(parent: AnnotationSet, audit: Audit) -> str:
    suffix = f"-final-audit{audit.id}"
    return parent.name[: NAME_LIMIT - len(suffix)] + suffix


def resolve(
    session: Session,
    store: Store,
    principal: Principal,
    audit: Audit,
    *,
    policy: Undecided,
    name: str | None = None,
    description: str = "",
) -> tuple[AnnotationSet, Resolution]:
    """Make the audit's resolved annotation set; refused (nothing written) while the audit has
    not succeeded, when the name is taken, or when no case would keep a mask. Commits.
    """
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; it can be resolved once it succeeded",
        )
    parent = session.get(AnnotationSet, audit.annotation_set_id)
    assert parent is not None  # an audit's set is kept while the audit is
    planned = plan(session, store, audit, Undecided(policy))
    if not any(p.file is not None for p in planned):
        raise Invalid(
            ErrorCode.NOTHING_RESOLVED,
            f"resolving audit {audit.id} with policy '{policy}' leaves no case with a mask; "
            "decide some cases, or choose keep_original or accept_flagged",
        )
    name = name or default_name(parent, audit)
    aset = AnnotationSet(
        dataset_id=audit.dataset_id,
        name=name,
        description=description
        or f"resolved from audit {audit.id} of '{parent.name}' (policy {policy})",
        tag=LabelTag.final.value,
        classes=dict(parent.classes or {}),
        classes_declared=parent.classes_declared,
    )
    session.add(aset)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            ErrorCode.ANNOTATION_SET_EXISTS,
            f"dataset {audit.dataset_id} already has an annotation set named '{name}'; "
            "give the resolved set another name",
        ) from None
    resolution = Resolution(
        annotation_set_id=aset.id,
        parent_set_id=parent.id,
        audit_id=audit.id,
        policy=Undecided(policy).value,
        key_id=principal.key_id,
        resolved_by=principal.name,
    )
    session.add(resolution)
    session.flush()
    for item in planned:
        mask = None
        if item.file is not None:
            ext = split_name(Path(item.file.name))[1]
            named = StoredFile(
                sha256=item.file.sha256,
                size_bytes=item.file.size_bytes,
                name=f"{item.case.name}{ext}",
                format=item.file.format,
            )
            mask = Mask(
                annotation_set_id=aset.id, case=item.case, file=named, max_label=item.max_label
            )
            session.add(mask)
            session.flush()
        session.add(
            ResolvedCase(
                resolution_id=resolution.id,
                case_id=item.case.id,
                source=item.source.value,
                mask_id=mask.id if mask is not None else None,
                review_id=item.word.review.id if item.word.review is not None else None,
                correction_id=item.word.correction.id
                if item.source == MaskSource.corrected and item.word.correction is not None
                else None,
            )
        )
    session.commit()
    return aset, resolution


def resolution_of(session: Session, aset: AnnotationSet) -> Resolution | None:
    return session.scalar(select(Resolution).where(Resolution.annotation_set_id == aset.id))


def source_counts(session: Session, resolution: Resolution) -> dict[str, int]:
    """How many cases took each source (every source named, zeros included)."""
    counts = {s.value: 0 for s in MaskSource}
    sources = session.scalars(
        select(ResolvedCase.source).where(ResolvedCase.resolution_id == resolution.id)
    )
    for source in sources:
        counts[source] += 1
    return counts


@dataclass(frozen=True)
class HistoryNote:
    """What a case's history adds to one audit's score: the set it scored, where a resolved
    set took the case's mask from, and the case's latest decision in that audit.
    """

    set_name: str
    tag: LabelTag
    source: MaskSource | None
    decision: Decision | None


def history_notes(session: Session, case_id: int, audits: list[Audit]) -> dict[int, HistoryNote]:
    """``HistoryNote`` per audit id, for the case's history across the dataset's audits."""
    set_ids = {a.annotation_set_id for a in audits}
    sets = {
        s.id: s for s in session.scalars(select(AnnotationSet).where(AnnotationSet.id.in_(set_ids)))
    }
    found = session.execute(
        select(Resolution.annotation_set_id, ResolvedCase.source)
        .join(ResolvedCase, ResolvedCase.resolution_id == Resolution.id)
        .where(Resolution.annotation_set_id.in_(set_ids), ResolvedCase.case_id == case_id)
    )
    sources: dict[int, str] = {}
    for set_id, took in found:
        sources[set_id] = took
    decisions: dict[int, str] = {}
    reviews = session.execute(
        select(Review.audit_id, Review.decision)
        .where(Review.case_id == case_id, Review.audit_id.in_([a.id for a in audits]))
        .order_by(Review.created_at, Review.id)
    )
    for audit_id, decided in reviews:
        decisions[audit_id] = decided  # the latest stays
    notes = {}
    for audit in audits:
        aset = sets[audit.annotation_set_id]
        source = sources.get(audit.annotation_set_id)
        decision = decisions.get(audit.id)
        notes[audit.id] = HistoryNote(
            aset.name,
            LabelTag(aset.tag),
            MaskSource(source) if source is not None else None,
            Decision(decision) if decision is not None else None,
        )
    return notes
