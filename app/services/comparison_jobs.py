r"""A comparison's lifecycle, as its worker moves it: compare-and-set transitions of
``app.services.state``, like an audit's (``app.services.lifecycle``).

    claim_comparison -> stage_masks -> report_progress ... -> complete_comparison
                                                    \-> fail_comparison | release_comparison

Every function here commits its own unit of work, so progress is visible to the API at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.enums import AuditStatus
from app.db.tables import AnnotationSet, Case, Comparison, ComparisonRow, Mask, StoredFile
from app.errors import NotFound
from app.services.comparisons import common_case_ids, set_ids
from app.services.files import publishing
from app.services.state import move_job
from app.storage import Store, copy_stream
from imaging.errors import ErrorCode
from imaging.formats import split_name
from models.agreement import PairScore, ranked

Q, R = AuditStatus.queued, AuditStatus.running
NAME_LIMIT = 200  # AnnotationSet.name


def _move(
    session: Session,
    comparison_id: int,
    *,
    expect: Sequence[AuditStatus],
    to: AuditStatus,
    when: Sequence[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    return move_job(session, Comparison, comparison_id, expect=expect, to=to, when=when, **values)


def _owned_by(task_id: str | None) -> list[ColumnElement[bool]]:
    return [] if task_id is None else [Comparison.task_id == task_id]


def claim_comparison(
    session: Session,
    comparison_id: int,
    *,
    task_id: str | None = None,
    stale_after_s: float | None = None,
) -> Comparison | None:
    """Move a queued comparison to running and return it; None if this worker may not run it.

    With ``stale_after_s``, a running comparison whose heartbeat is older than that is taken
    over too (its worker died and the broker delivered the task again).
    """
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": Comparison.attempts + 1,
        "started_at": now,
        "heartbeat_at": now,
        "cases_done": 0,
        "percent": 0.0,
        "error_code": None,
        "error_message": None,
    }
    if task_id is not None:
        values["task_id"] = task_id
    moved = _move(session, comparison_id, expect=[Q], to=R, **values)
    if not moved and stale_after_s is not None:
        cutoff = now - dt.timedelta(seconds=stale_after_s)
        moved = _move(
            session,
            comparison_id,
            expect=[R],
            to=R,
            when=[Comparison.heartbeat_at < cutoff],
            **values,
        )
    session.commit()
    return session.get(Comparison, comparison_id, populate_existing=True) if moved else None


def report_progress(
    session: Session,
    comparison_id: int,
    *,
    cases_done: int,
    percent: float,
    task_id: str | None = None,
) -> bool:
    """Record progress and a heartbeat; False when the comparison is no longer this worker's
    (another took it over): the caller stops and stores nothing. Commits.
    """
    moved = _move(
        session,
        comparison_id,
        expect=[R],
        to=R,
        when=_owned_by(task_id),
        cases_done=cases_done,
        percent=percent,
        heartbeat_at=utcnow(),
    )
    session.commit()
    return moved


def fail_comparison(session: Session, comparison_id: int, *, code: ErrorCode, message: str) -> bool:
    """Mark a queued or running comparison failed with a stable code and a message. Commits."""
    moved = _move(
        session,
        comparison_id,
        expect=[Q, R],
        to=AuditStatus.failed,
        error_code=code.value,
        error_message=message,
        finished_at=utcnow(),
    )
    session.commit()
    return moved


def release_comparison(
    session: Session, comparison_id: int, *, message: str, task_id: str | None = None
) -> bool:
    """Put a running comparison back in the queue (a retry after a transient error); the
    attempt does not count. Commits.
    """
    moved = _move(
        session,
        comparison_id,
        expect=[R],
        to=Q,
        when=_owned_by(task_id),
        error_message=message,
        attempts=Comparison.attempts - 1,
    )
    session.commit()
    return moved


@dataclass(frozen=True)
class StagedCase:
    """One case to compare: its grid and its mask in each set (links with the file's
    extension, in the comparison's order of sets).
    """

    case_id: int
    name: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    masks: tuple[Path, ...]


@dataclass(frozen=True)
class Staged:
    set_ids: list[int]
    labels: list[int]  # the classes 1..K-1 of all the compared masks
    cases: list[StagedCase]


def stage_masks(session: Session, store: Store, comparison_id: int, dest: Path) -> Staged:
    """Lay out the comparison's masks as ``dest/<position>/<case><ext>``, links into the store."""
    comparison = session.get(Comparison, comparison_id)
    if comparison is None:
        raise NotFound(ErrorCode.NOT_FOUND, f"no comparison {comparison_id}")
    ids = set_ids(session, comparison_id)
    case_ids = common_case_ids(session, ids, before=comparison.created_at)
    rows = session.execute(
        select(Mask.annotation_set_id, Mask.case_id, StoredFile.name, StoredFile.sha256)
        .join(StoredFile, StoredFile.id == Mask.file_id)
        .where(Mask.annotation_set_id.in_(ids), Mask.case_id.in_(case_ids))
    ).all()
    files = {(set_id, case_id): (name, sha) for set_id, case_id, name, sha in rows}
    top = session.scalar(
        select(func.max(Mask.max_label)).where(
            Mask.annotation_set_id.in_(ids), Mask.case_id.in_(case_ids)
        )
    )
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    staged = []
    for case_id in case_ids:
        case = cases[case_id]
        links = []
        for position, set_id in enumerate(ids):
            name, sha = files[(set_id, case_id)]
            source = store.path(sha)
            if not source.is_file():
                raise NotFound(ErrorCode.NOT_FOUND, f"the stored file of {name} is missing")
            link = dest / str(position) / f"{case.name}{split_name(Path(name))[1]}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
            links.append(link)
        staged.append(
            StagedCase(
                case_id,
                case.name,
                tuple(case.shape),
                tuple(float(s) for s in case.spacing),
                tuple(links),
            )
        )
    return Staged(ids, list(range(1, int(top or 0) + 1)), staged)


@dataclass(frozen=True)
class ConsensusMask:
    """A case's STAPLE consensus, written on its grid (in the first set's mask format)."""

    case_id: int
    path: Path
    max_label: int


def complete_comparison(
    session: Session,
    store: Store,
    comparison_id: int,
    *,
    scores: Sequence[PairScore],
    staged: Staged,
    summary: dict[str, Any],
    consensus: Sequence[ConsensusMask] = (),
) -> bool:
    """Store the rows (ranked), the consensus as a new annotation set of the dataset (when
    given) and the summary, and mark the comparison succeeded: all in one transaction.

    False (and nothing stored) when the comparison is no longer running.
    """
    comparison = session.get(Comparison, comparison_id, populate_existing=True)
    if comparison is None or comparison.status != R:
        return False
    case_ids = {c.name: c.case_id for c in staged.cases}
    ids = staged.set_ids
    try:
        with publishing(session, store) as add_file, store.staging() as folder:
            session.add_all(
                ComparisonRow(
                    comparison_id=comparison_id,
                    case_id=case_ids[pair.case],
                    label=score.label,
                    set_a_id=ids[pair.a],
                    set_b_id=ids[pair.b],
                    status=score.status.value,
                    dice=score.dice,
                    mean_distance_mm=score.mean_distance_mm,
                    p95_distance_mm=score.p95_distance_mm,
                    objects_a=score.objects_a,
                    objects_b=score.objects_b,
                    only_in_a=score.only_in_a,
                    only_in_b=score.only_in_b,
                    disagreement=score.disagreement,
                    rank=rank,
                )
                for rank, (pair, score) in enumerate(ranked(scores), start=1)
            )
            values: dict[str, Any] = {}
            if consensus:
                aset = _consensus_set(session, comparison, ids)
                for item in consensus:
                    with item.path.open("rb") as stream:
                        written = copy_stream(stream, folder / f"{item.case_id}")
                    session.add(
                        Mask(
                            annotation_set_id=aset.id,
                            case_id=item.case_id,
                            file=add_file(written, item.path.name),
                            max_label=item.max_label,
                        )
                    )
                values["consensus_set_id"] = aset.id
                summary = {**summary, "staple": {**summary["staple"], "annotation_set_id": aset.id}}
            finished = utcnow()
            started = comparison.started_at or finished
            summary = {**summary, "run_s": round((finished - started).total_seconds(), 3)}
            if not _move(
                session,
                comparison_id,
                expect=[R],
                to=AuditStatus.succeeded,
                finished_at=finished,
                heartbeat_at=finished,
                cases_done=len(staged.cases),
                percent=100.0,
                summary=summary,
                **values,
            ):
                raise _Lost
    except _Lost:
        return False
    return True


def _consensus_set(session: Session, comparison: Comparison, ids: Sequence[int]) -> AnnotationSet:
    query = select(AnnotationSet.id, AnnotationSet.name, AnnotationSet.classes).where(
        AnnotationSet.id.in_(list(ids))
    )
    found = {row.id: row for row in session.execute(query)}
    names = {i: row.name for i, row in found.items()}
    classes: dict[str, int] = {}
    for i in ids:  # the first set's names, then the values only later sets have
        for n, v in (found[i].classes or {}).items():
            if v not in classes.values():
                classes[n if n not in classes else f"{n}_{v}"] = v
    suffix = f" (comparison {comparison.id})"
    listed = ", ".join(names[i] for i in ids)
    room = NAME_LIMIT - len("STAPLE consensus of ") - len(suffix)
    if len(listed) > room:
        listed = listed[: room - 3] + "..."
    aset = AnnotationSet(
        dataset_id=comparison.dataset_id,
        name=f"STAPLE consensus of {listed}{suffix}",
        description=(
            f"A candidate set: the STAPLE consensus (SimpleITK, per class) of annotation sets "
            f"{', '.join(str(i) for i in ids)}, from comparison {comparison.id}."
        ),
        classes=classes,
    )
    session.add(aset)
    session.flush()
    return aset


class _Lost(Exception):
    """The comparison left ``running`` while its results were being written."""
