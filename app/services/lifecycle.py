r"""The audit's lifecycle, in one place: every move a worker (or the reconciler) makes on an
audit row, each a compare-and-set transition of ``app.services.state``.

    claim_audit -> stage_inputs -> report_progress / heartbeat ... -> complete_audit
                                                        \-> fail_audit | release_audit
    reclaim_stale, queued_audit_ids: the reconciler's view of audits that lost their worker

A worker's task reads (names from ``app.queue``)::

    audit = lifecycle.claim_audit(session, audit_id, task_id=..., stale_after_s=...)
    if audit is None: return                      # cancelled, finished, or another worker has it
    images, masks = lifecycle.stage_inputs(session, store, audit_id, workdir / "inputs")
    config = AuditConfig.from_dict(audit.parameters)
    result = run_audit(images, masks, workdir / "out", config, report=...)
    lifecycle.complete_audit(session, store, audit_id, result.out_dir, result.results, result.run)
    # on a bad input or crash: lifecycle.fail_audit(session, audit_id, code=..., message=...)

Every function here commits its own unit of work, so progress is visible to the API at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, aliased

from app.db.base import utcnow
from app.db.enums import AuditStatus
from app.db.tables import Audit, AuditMask, Case, Mask, StoredFile
from app.errors import NotFound
from app.services.files import publishing
from app.services.result_rows import save_results, summarise
from app.services.state import compare_and_set
from app.storage import Store
from imaging.errors import ErrorCode
from imaging.formats import split_name
from models.results import CaseResult

Q, R = AuditStatus.queued, AuditStatus.running


def claim_audit(
    session: Session,
    audit_id: int,
    *,
    task_id: str | None = None,
    stale_after_s: float | None = None,
) -> Audit | None:
    """Move a queued audit to running and return it; None if this worker may not run it.

    With ``stale_after_s``, a running audit whose heartbeat is older than that is taken over
    too (its worker died and the broker redelivered the task). ``attempts`` counts the claims.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": Audit.attempts + 1,
        "started_at": now,
        "heartbeat_at": now,
        "phase": "queued",
        "error_code": None,
        "error_message": None,
    }
    if task_id is not None:
        values["task_id"] = task_id
    moved = compare_and_set(session, audit_id, expect=[Q], to=R, **values)
    if not moved and stale_after_s is not None:
        cutoff = now - dt.timedelta(seconds=stale_after_s)
        moved = compare_and_set(
            session, audit_id, expect=[R], to=R, when=[Audit.heartbeat_at < cutoff], **values
        )
    session.commit()
    return session.get(Audit, audit_id, populate_existing=True) if moved else None


def report_progress(
    session: Session,
    audit_id: int,
    *,
    phase: str,
    epoch: int | None = None,
    epochs: int | None = None,
    percent: float | None = None,
    eta_seconds: float | None = None,
    loss: float | None = None,
    flagged: int | None = None,
    task_id: str | None = None,
) -> bool:
    """Record progress and a heartbeat. False means the audit is no longer running (it was
    cancelled, or another worker took it over: with ``task_id``, the audit must still be that
    task's): the caller should stop and store nothing.
    """
    moved = compare_and_set(
        session,
        audit_id,
        expect=[R],
        to=R,
        when=_owned_by(task_id),
        phase=phase,
        epoch=epoch,
        epochs=epochs,
        percent=percent,
        eta_seconds=eta_seconds,
        loss=loss,
        flagged=flagged,
        heartbeat_at=utcnow(),
    )
    session.commit()
    return moved


def heartbeat(session: Session, audit_id: int, *, task_id: str | None = None) -> bool:
    """Refresh a running audit's heartbeat only; False as for ``report_progress``. Commits."""
    moved = compare_and_set(
        session, audit_id, expect=[R], to=R, when=_owned_by(task_id), heartbeat_at=utcnow()
    )
    session.commit()
    return moved


def _owned_by(task_id: str | None) -> list[ColumnElement[bool]]:
    return [] if task_id is None else [Audit.task_id == task_id]


@dataclass(frozen=True)
class Reclaimed:
    """What ``reclaim_stale`` did: audits put back in the queue, and audits failed."""

    requeued: list[int]
    failed: list[int]


def reclaim_stale(session: Session, *, stale_after_s: float, max_attempts: int) -> Reclaimed:
    """Running audits whose heartbeat is older than ``stale_after_s`` lost their worker: put
    those with attempts left back in the queue (the caller sends them again), fail the others
    ``worker_lost``. Each move re-checks the heartbeat, so a live audit is never touched. Commits.
    """
    cutoff = utcnow() - dt.timedelta(seconds=stale_after_s)
    stale = session.execute(
        select(Audit.id, Audit.attempts, Audit.heartbeat_at)
        .where(Audit.status == R.value, Audit.heartbeat_at < cutoff)
        .order_by(Audit.id)
    ).all()
    requeued, failed = [], []
    for audit_id, attempts, beat in stale:
        still_stale = [Audit.heartbeat_at < cutoff]
        if attempts < max_attempts:
            message = (
                f"the worker stopped sending heartbeats (last at {beat:%Y-%m-%d %H:%M:%S} UTC); "
                f"requeued to resume from the last checkpoint (attempt {attempts + 1} of "
                f"{max_attempts})"
            )
            if compare_and_set(
                session,
                audit_id,
                expect=[R],
                to=Q,
                when=still_stale,
                error_message=message,
                phase=None,
            ):
                requeued.append(audit_id)
        else:
            message = (
                f"the audit's worker stopped {attempts} times without finishing (killed, out of "
                f"memory, or its host lost; last heartbeat at {beat:%Y-%m-%d %H:%M:%S} UTC); "
                f"gave up after {max_attempts} attempts"
            )
            if compare_and_set(
                session,
                audit_id,
                expect=[R],
                to=AuditStatus.failed,
                when=still_stale,
                error_code=ErrorCode.WORKER_LOST.value,
                error_message=message,
                finished_at=utcnow(),
            ):
                failed.append(audit_id)
        session.commit()
    return Reclaimed(requeued, failed)


def queued_audit_ids(session: Session, *, created_before: dt.datetime) -> list[int]:
    """The queued audits created before ``created_before``, oldest first."""
    query = (
        select(Audit.id)
        .where(Audit.status == Q.value, Audit.created_at < created_before)
        .order_by(Audit.id)
    )
    return list(session.scalars(query))


def release_audit(
    session: Session,
    audit_id: int,
    *,
    message: str = "",
    task_id: str | None = None,
    refund: bool = False,
) -> bool:
    """Put a running audit back in the queue (a retry after a transient error). Commits.

    With ``task_id``, only while it is that task's. ``refund``: the attempt does not count
    towards the limit (the worker was asked to stop, or the database failed: not the audit's
    doing), so that deploys do not use up an audit's attempts.
    """
    refunded = {"attempts": Audit.attempts - 1} if refund else {}
    moved = compare_and_set(
        session,
        audit_id,
        expect=[R],
        to=Q,
        when=_owned_by(task_id),
        error_message=message or None,
        phase=None,
        **refunded,
    )
    session.commit()
    return moved


def fail_audit(session: Session, audit_id: int, *, code: ErrorCode, message: str) -> bool:
    """Mark a queued or running audit failed with a stable code (an ``ErrorCode``, e.g.
    ``too_few_cases``) and a message for the user. Commits.
    """
    moved = compare_and_set(
        session,
        audit_id,
        expect=[Q, R],
        to=AuditStatus.failed,
        error_code=code.value,
        error_message=message,
        finished_at=utcnow(),
    )
    session.commit()
    return moved


def stage_inputs(session: Session, store: Store, audit_id: int, dest: Path) -> tuple[Path, Path]:
    """Lay out the audit's images and masks as ``run_audit`` reads them: ``dest/images`` and
    ``dest/masks``, one ``<case><ext>`` per case, as symbolic links into the store.
    """
    image, mask_file = aliased(StoredFile), aliased(StoredFile)
    rows = session.execute(
        select(Case.name, image.name, image.sha256, mask_file.name, mask_file.sha256)
        .join(Mask, Mask.case_id == Case.id)
        .join(AuditMask, AuditMask.mask_id == Mask.id)
        .join(image, image.id == Case.image_file_id)
        .join(mask_file, mask_file.id == Mask.file_id)
        .where(AuditMask.audit_id == audit_id)
        .order_by(Case.name)
    ).all()
    if not rows:
        raise NotFound(ErrorCode.NOT_FOUND, f"audit {audit_id} has no cases to stage")
    images, masks = dest / "images", dest / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for case, image_name, image_sha, mask_name, mask_sha in rows:
        for folder, name, sha in ((images, image_name, image_sha), (masks, mask_name, mask_sha)):
            source = store.path(sha)
            if not source.is_file():
                raise NotFound(ErrorCode.NOT_FOUND, f"the stored file of {name} is missing")
            (folder / f"{case}{split_name(Path(name))[1]}").symlink_to(source)
    return images, masks


def complete_audit(
    session: Session,
    store: Store,
    audit_id: int,
    out_dir: Path,
    results: Sequence[CaseResult],
    run_info: dict[str, Any],
) -> bool:
    """Store the engine's results (most suspect first; their masks under ``out_dir``) and mark
    the audit succeeded, in one transaction. ``run_info`` is what run.json holds.

    False (and nothing stored) when the audit is no longer running, e.g. it was cancelled.
    Rerunning it overwrites the rows of the earlier run; it never duplicates them.
    """
    audit = session.get(Audit, audit_id, populate_existing=True)
    if audit is None or audit.status != R:
        return False
    try:
        with publishing(session, store) as add_file:
            save_results(session, store, audit_id, results, out_dir, add_file)
            finished = utcnow()
            moved = compare_and_set(
                session,
                audit_id,
                expect=[R],
                to=AuditStatus.succeeded,
                finished_at=finished,
                phase="done",
                percent=100.0,
                eta_seconds=0.0,
                flagged=sum(r.flagged for r in results),
                heartbeat_at=finished,
                summary=summarise(results, audit, finished, run_info),
            )
            if not moved:
                raise _Lost
    except _Lost:
        return False
    return True


class _Lost(Exception):
    """The audit left ``running`` while its results were being written."""
