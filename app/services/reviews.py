"""Reviews of a case's result and corrected masks: added with who and when, never changed or
removed. A case's latest word (its latest decision or correction) is what a resolve follows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus, Decision, Role
from app.db.tables import Audit, AuditMask, Case, Correction, Mask, ResultRow, Review
from app.errors import Conflict, Forbidden, Invalid, ServiceError
from app.services.checks import check_mask
from app.services.files import publishing
from app.services.keys import Principal
from app.services.results import get_result
from app.storage import Store
from app.uploads import Incoming
from imaging.classes import check_declared
from imaging.errors import ErrorCode, InputError
from imaging.formats import format_of, split_name
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG


def _succeeded(audit: Audit, what: str) -> None:
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its cases can be {what} once it succeeded",
        )


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
    _succeeded(audit, "reviewed")
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


def list_corrections(session: Session, result: ResultRow) -> list[Correction]:
    query = (
        select(Correction)
        .where(Correction.audit_id == result.audit_id, Correction.case_id == result.case_id)
        .order_by(Correction.created_at, Correction.id)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Word:
    """A case's standing in an audit: its latest decision, and the latest correction made
    after it (or at all, without a decision).
    """

    review: Review | None = None
    correction: Correction | None = None

    @property
    def open(self) -> bool:
        """Sent back for rework and not corrected since."""
        return (
            self.correction is None
            and self.review is not None
            and self.review.decision == Decision.needs_rework
        )


def latest_words(session: Session, audit: Audit) -> dict[int, Word]:
    """Each reviewed or corrected case of ``audit`` (by case id) and its latest word.

    Reviews and corrections form one timeline per case (by time; a correction after a review
    made in the same instant); a decision after a correction overrules it, and the reverse.
    """
    events: dict[int, list[tuple[dt.datetime, int, int, Review | Correction]]] = {}
    for review in session.scalars(select(Review).where(Review.audit_id == audit.id)):
        events.setdefault(review.case_id, []).append((review.created_at, 0, review.id, review))
    for fix in session.scalars(select(Correction).where(Correction.audit_id == audit.id)):
        events.setdefault(fix.case_id, []).append((fix.created_at, 1, fix.id, fix))
    words = {}
    for case_id, timeline in events.items():
        timeline.sort(key=lambda e: (e[0], e[1], e[2]))
        decided = [e[3] for e in timeline if isinstance(e[3], Review)]
        last = timeline[-1][3]
        words[case_id] = Word(
            decided[-1] if decided else None, last if isinstance(last, Correction) else None
        )
    return words


def open_for_rework(session: Session, audit: Audit) -> list[tuple[Case, Review]]:
    """The audit's cases whose latest decision is ``needs_rework`` with no correction since,
    by case name: what the annotators have to do.
    """
    words = latest_words(session, audit)
    ids = [case_id for case_id, word in words.items() if word.open]
    cases = session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.name))
    found = []
    for case in cases:
        review = words[case.id].review
        assert review is not None  # an open word has its needs_rework decision
        found.append((case, review))
    return found


def add_correction(
    session: Session,
    store: Store,
    principal: Principal,
    audit: Audit,
    case_name: str,
    files: list[Incoming],
    *,
    comment: str = "",
) -> Correction:
    """Store a corrected mask for one case of ``audit``, checked as an uploaded mask is (its
    case's grid, class indices within the audit's classes, the format of the audited mask).

    Reviewers may correct any case; annotators only one whose latest decision is
    ``needs_rework``. All or nothing. Commits.
    """
    _succeeded(audit, "corrected")
    result = get_result(session, audit, case_name)
    if not principal.may(Role.reviewer):
        word = latest_words(session, audit).get(result.case_id, Word())
        latest = word.review.decision if word.review is not None else "none"
        if latest != Decision.needs_rework:
            raise Forbidden(
                ErrorCode.NOT_IN_REWORK,
                f"case '{case_name}' of audit {audit.id} has the latest decision '{latest}'; an "
                "annotator may correct only cases a reviewer marked needs_rework",
            )
    if len(files) != 1:
        raise Invalid(
            ErrorCode.INVALID_REQUEST,
            f"the upload holds {len(files)} files; a correction is one mask file for "
            f"case '{case_name}'",
        )
    item = files[0]
    given = _audited_mask(session, audit, result.case_id)
    if given.file.format in (DICOM_SEG, DICOM_RTSTRUCT):
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{item.name}: case '{case_name}' is a DICOM series; corrected DICOM masks are not "
            "taken yet (upload the correction as a new annotation set instead)",
            file=item.name,
        )
    ext = split_name(Path(given.file.name))[1]
    if format_of(Path(item.name)) != format_of(Path(given.file.name)):
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{item.name}: case '{case_name}' was audited with a {ext} mask; upload its "
            f"correction as a {ext} file",
            file=item.name,
        )
    case = result.case
    info = check_mask(Incoming(item.name, case.name, item.written), case)
    max_label = info.max_label
    declared = audit.parameters.get("classes")
    if declared:
        try:
            check_declared(info.values, declared, name=item.name)
        except InputError as exc:
            raise ServiceError.invalid_input(exc, file=item.name) from None
    classes = _classes(audit, result)
    if max_label >= classes:
        raise Invalid(
            ErrorCode.MASK_OUT_OF_RANGE,
            f"mask {item.name} holds the value {max_label}; audit {audit.id} scored classes "
            f"0..{classes - 1}, and a correction must hold class indices among them",
            file=item.name,
        )
    try:
        with publishing(session, store) as add_file:
            correction = Correction(
                audit_id=audit.id,
                case_id=case.id,
                file=add_file(item.written, f"{case.name}{ext}"),
                max_label=max_label,
                comment=comment,
                key_id=principal.key_id,
                author=principal.name,
            )
            session.add(correction)
    except IntegrityError:  # pragma: no cover - a row it refers to was removed meanwhile
        raise Conflict(ErrorCode.NOT_FOUND, f"audit {audit.id} changed meanwhile") from None
    return correction


def _audited_mask(session: Session, audit: Audit, case_id: int) -> Mask:
    mask = session.scalar(
        select(Mask)
        .join(AuditMask, AuditMask.mask_id == Mask.id)
        .where(AuditMask.audit_id == audit.id, Mask.case_id == case_id)
    )
    assert mask is not None  # an audit's results are of its masks
    return mask


def _classes(audit: Audit, result: ResultRow) -> int:
    """The audit's number of classes K (background included)."""
    explicit = audit.parameters.get("num_classes")
    return int(explicit) if explicit else len(result.dice) + 1
