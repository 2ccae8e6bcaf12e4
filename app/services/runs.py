"""What a worker does to an audit: claim it, stage its inputs, report progress, store the results.

A worker's task is meant to read (names from ``app.queue``)::

    audit = runs.claim_audit(session, audit_id, task_id=..., stale_after_s=...)
    if audit is None: return                      # cancelled, finished, or another worker has it
    images, masks = runs.stage_inputs(session, store, audit_id, workdir / "inputs")
    result = run_audit(images, masks, workdir / "out", runs.audit_config(audit),
                       report=lambda p: runs.report_progress(session, audit_id, ...) or stop())
    runs.complete_audit(session, store, audit_id, workdir / "out")
    # on a bad input or crash: runs.fail_audit(session, audit_id, code=..., message=...)

Every function here commits its own unit of work, so progress is visible to the API at once.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import statistics
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, aliased

from app import errors
from app.db.base import utcnow
from app.db.enums import AuditStatus
from app.db.tables import Audit, AuditMask, Case, CaseResult, Mask, StoredFile
from app.errors import NotFound
from app.services.files import AddFile, publishing
from app.services.state import compare_and_set
from app.storage import Store, copy_stream
from models import outputs
from models.config import AuditConfig
from models.io import split_name

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


def audit_config(audit: Audit) -> AuditConfig:
    """The audit's parameters, as the engine takes them."""
    return AuditConfig.from_dict(audit.parameters)


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


def reclaim_stale(
    session: Session, *, stale_after_s: float, max_attempts: int, code: str
) -> Reclaimed:
    """Running audits whose heartbeat is older than ``stale_after_s`` lost their worker: put
    those with attempts left back in the queue (the caller sends them again), fail the others
    with ``code``. Each move re-checks the heartbeat, so a live audit is never touched. Commits.
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
                error_code=code,
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


def fail_audit(session: Session, audit_id: int, *, code: str, message: str) -> bool:
    """Mark a queued or running audit failed with a stable code (``models.errors`` for bad
    input, e.g. ``too_few_cases``) and a message for the user. Commits.
    """
    moved = compare_and_set(
        session,
        audit_id,
        expect=[Q, R],
        to=AuditStatus.failed,
        error_code=code,
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
        raise NotFound(errors.NOT_FOUND, f"audit {audit_id} has no cases to stage")
    images, masks = dest / "images", dest / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for case, image_name, image_sha, mask_name, mask_sha in rows:
        for folder, name, sha in ((images, image_name, image_sha), (masks, mask_name, mask_sha)):
            source = store.path(sha)
            if not source.is_file():
                raise NotFound(errors.NOT_FOUND, f"the stored file of {name} is missing")
            (folder / f"{case}{split_name(Path(name))[1]}").symlink_to(source)
    return images, masks


@dataclass(frozen=True)
class ResultIn:
    """One case's result as the engine wrote it (a row of scores.csv and its files)."""

    case: str
    rank: int
    noise_score: float
    flagged: bool
    ce: float
    dice_gap: float
    dice: list[float]
    changed_fraction: float
    issue_fraction: float
    slices: list[dict[str, Any]] | None = None
    cleansed: Path | None = None
    pseudo_label: Path | None = None
    issue_map: Path | None = None


def read_outputs(out_dir: Path) -> list[ResultIn]:
    """The results in an audit's output folder (``scores.csv``, ``slices.csv`` and the masks
    under ``cleansed/``, ``pseudo_labels/``, ``issue_maps/``), in rank order.
    """
    slices: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if (out_dir / outputs.SLICES).is_file():
        with (out_dir / outputs.SLICES).open(newline="") as f:
            for row in csv.DictReader(f):
                case = row.pop("case")
                slices[case].append(
                    {k: float(v) if k == "dice_gap" else int(v) for k, v in row.items()}
                )
    files = {
        folder: {split_name(p)[0]: p for p in (out_dir / folder).iterdir()}
        if (out_dir / folder).is_dir()
        else {}
        for folder in (outputs.CLEANSED, outputs.PSEUDO, outputs.ISSUE_MAPS)
    }
    results = []
    for row in outputs.read_scores(out_dir / outputs.SCORES):
        case = row["case"]
        dice_cols = sorted(
            (k for k in row if k.startswith("dice_class_")), key=lambda k: int(k.rsplit("_", 1)[1])
        )
        results.append(
            ResultIn(
                case=case,
                rank=int(row["rank"]),
                noise_score=float(row["noise_score"]),
                flagged=row["flagged"] == "1",
                ce=float(row["ce"]),
                dice_gap=float(row["dice_gap"]),
                dice=[float(row[k]) for k in dice_cols],
                changed_fraction=float(row["changed_fraction"]),
                issue_fraction=float(row["issue_fraction"]),
                slices=slices.get(case),
                cleansed=files[outputs.CLEANSED].get(case),
                pseudo_label=files[outputs.PSEUDO].get(case),
                issue_map=files[outputs.ISSUE_MAPS].get(case),
            )
        )
    return results


def save_results(
    session: Session, store: Store, audit_id: int, results: Sequence[ResultIn], add_file: AddFile
) -> None:
    """Insert or overwrite the audit's per-case results, keyed on (audit, case); flushes only.

    ``add_file`` comes from ``publishing``, which commits the rows with their files.
    """
    case_ids = dict(
        session.execute(
            select(Case.name, Case.id)
            .join(Mask, Mask.case_id == Case.id)
            .join(AuditMask, AuditMask.mask_id == Mask.id)
            .where(AuditMask.audit_id == audit_id)
        ).all()
    )
    rows = []
    with store.staging() as folder:
        for result in results:
            if result.case not in case_ids:
                raise NotFound(errors.NOT_FOUND, f"audit {audit_id} has no case '{result.case}'")
            row: dict[str, Any] = {
                "audit_id": audit_id,
                "case_id": case_ids[result.case],
                "rank": result.rank,
                "noise_score": result.noise_score,
                "flagged": result.flagged,
                "ce": result.ce,
                "dice_gap": result.dice_gap,
                "dice": list(result.dice),
                "changed_fraction": result.changed_fraction,
                "issue_fraction": result.issue_fraction,
                "slices": result.slices,
                "updated_at": utcnow(),
            }
            for column, path in (
                ("cleansed_file_id", result.cleansed),
                ("pseudo_label_file_id", result.pseudo_label),
                ("issue_map_file_id", result.issue_map),
            ):
                row[column] = _store_file(session, add_file, folder, path)
            rows.append(row)
        for start in range(0, len(rows), 500):
            _upsert(session, rows[start : start + 500])


def _store_file(session: Session, add_file: AddFile, folder: Path, path: Path | None) -> int | None:
    if path is None:
        return None
    target = folder / uuid.uuid4().hex
    with path.open("rb") as stream:
        written = copy_stream(stream, target)
    row = add_file(written, path.name)
    session.flush()
    return row.id


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the two databases the service supports
        raise NotImplementedError(f"no upsert for {dialect}")
    statement = insert(CaseResult).values(rows)
    keep = {"audit_id", "case_id"}
    statement = statement.on_conflict_do_update(
        index_elements=["audit_id", "case_id"],
        set_={k: statement.excluded[k] for k in rows[0] if k not in keep},
    )
    session.execute(statement)


def complete_audit(session: Session, store: Store, audit_id: int, out_dir: Path) -> bool:
    """Store the results in ``out_dir`` and mark the audit succeeded, in one transaction.

    False (and nothing stored) when the audit is no longer running, e.g. it was cancelled.
    Rerunning it overwrites the rows of the earlier run; it never duplicates them.
    """
    audit = session.get(Audit, audit_id, populate_existing=True)
    if audit is None or audit.status != R:
        return False
    results = read_outputs(out_dir)
    run_info = _read_run(out_dir)
    try:
        with publishing(session, store) as add_file:
            save_results(session, store, audit_id, results, add_file)
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


def _read_run(out_dir: Path) -> dict[str, Any]:
    path = out_dir / outputs.RUN
    return json.loads(path.read_text()) if path.is_file() else {}


def summarise(
    results: Sequence[ResultIn], audit: Audit, finished: dt.datetime, run: dict[str, Any]
) -> dict[str, Any]:
    """Counts and durations (no AUROC: production has no ground truth)."""
    scores = [r.noise_score for r in results]
    started = audit.started_at or finished
    engine = run.get("summary", {})
    return {
        "cases": len(results),
        "flagged": sum(r.flagged for r in results),
        "mean_noise_score": round(statistics.fmean(scores), 6) if scores else None,
        "max_noise_score": round(max(scores), 6) if scores else None,
        "filter_degenerate": engine.get("filter_degenerate"),
        "filter_reason": engine.get("filter_reason"),
        "durations": {
            "queued_s": round((started - audit.created_at).total_seconds(), 3),
            "run_s": round((finished - started).total_seconds(), 3),
            **{k: v for k, v in run.get("timings", {}).items() if k.endswith("_s")},
        },
    }
