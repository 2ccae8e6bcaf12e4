"""One attempt at an audit, start to finish: what every worker task and the embedded mode run.

    claim -> stage the inputs -> run_audit (progress, heartbeat, cancel, time limits) -> store

Its run folder lives in storage, keyed by the audit (``<storage>/runs/<id>/``): the engine
checkpoints ``out/model.pt`` there after every epoch, so whichever worker claims the audit next
(after a crash, a redelivery or a shutdown) resumes from the last finished epoch. On success
``out/model.pt`` and ``out/run.json`` stay (the trained network and the run's record); a failed
or cancelled audit's folder is removed.

Every database write goes through ``app.services.lifecycle`` (compare-and-set transitions), so a
duplicate task, a cancel or another worker's takeover is noticed and nothing is stored twice.
The engine's results are handed to it in memory; the files in ``out/`` are for people.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session, sessionmaker

from app.db.enums import AuditStatus
from app.db.tables import Audit
from app.runs import run_folder
from app.services import lifecycle
from app.settings import Settings
from app.storage import Store, is_no_space, storage_full
from imaging import layout
from imaging.errors import ErrorCode, SegauditError
from models.config import AuditConfig
from worker.progress import Eta, Throttle, percent_done
from worker.transient import TRANSIENT, unreachable
from worker.watch import Watch

if TYPE_CHECKING:
    from models.audit import AuditResult
    from models.train import Progress

log = logging.getLogger(__name__)

HARD_LIMIT_EXIT = 70  # EX_SOFTWARE: the process is ended at the hard time limit


class Outcome(StrEnum):
    skipped = "skipped"  # not claimed: finished, cancelled, or another worker is running it
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"  # another worker took the audit over (or it was requeued); its folder stays
    released = "released"  # the worker is shutting down: the audit is back in the queue


Sessions = sessionmaker[Session]


def run_audit_job(
    audit_id: int,
    *,
    sessions: Sessions,
    store: Store,
    settings: Settings,
    task_id: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Claim the audit and run one attempt at it; returns what became of it.

    ``should_stop`` is asked at every training step: True (the worker is shutting down) puts
    the audit back in the queue, checkpoint kept. Raises ``Transient`` when the database is
    unreachable; every other error ends the audit ``failed`` with a code and a message.
    """
    try:
        with sessions() as session:
            audit = lifecycle.claim_audit(
                session, audit_id, task_id=task_id, stale_after_s=settings.heartbeat_timeout_s
            )
            if audit is None:
                log.info("audit %s: not claimed (finished, cancelled or running)", audit_id)
                return Outcome.skipped
            attempts, parameters = audit.attempts, audit.parameters
    except TRANSIENT as exc:
        raise unreachable(exc) from exc
    log.info("audit %s: claimed (attempt %s)", audit_id, attempts)
    if attempts > settings.max_attempts:
        message = (
            f"the audit was started {attempts - 1} times and its worker stopped each time "
            f"(killed, out of memory, or its host lost); gave up after {settings.max_attempts} "
            "attempts (SEGAUDIT_MAX_ATTEMPTS)"
        )
        return _fail(sessions, store, audit_id, ErrorCode.WORKER_LOST, message)
    try:
        # The audit's id goes into the engine's config: its DICOM outputs name the audit.
        config = AuditConfig.from_dict({**parameters, "audit_id": audit_id})
    except (TypeError, ValueError) as exc:
        return _fail(sessions, store, audit_id, ErrorCode.INVALID_PARAMETERS, str(exc))
    return _Attempt(audit_id, config, sessions, store, settings, task_id, should_stop).run()


class StopReason(StrEnum):
    """Why a run was stopped between two steps."""

    lost = "lost"  # cancelled, or another worker took the audit over
    shutdown = "shutdown"  # the worker was asked to stop
    overtime = "overtime"  # past the soft time limit


class _Stop(Exception):
    """Raised inside the engine's progress callback to end the run between two steps."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class _Attempt:
    def __init__(
        self,
        audit_id: int,
        config: AuditConfig,
        sessions: Sessions,
        store: Store,
        settings: Settings,
        task_id: str | None,
        should_stop: Callable[[], bool],
    ) -> None:
        self.audit_id = audit_id
        self.config = config
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.task_id = task_id
        self.should_stop = should_stop
        self.folder = run_folder(store, audit_id)
        self.started = time.monotonic()
        self.watch = Watch(
            self._beat,
            interval=settings.heartbeat_timeout_s / 4,
            hard_limit_s=settings.audit_time_limit_s,
            on_hard_limit=self._hard_limit,
        )

    def run(self) -> Outcome:
        out = self.folder / "out"
        self.watch.start()
        try:
            with self.sessions() as session:
                inputs = self.folder / "inputs"
                shutil.rmtree(inputs, ignore_errors=True)  # links of an earlier attempt
                images, masks = lifecycle.stage_inputs(session, self.store, self.audit_id, inputs)
                resume = (out / layout.MODEL).is_file()
                if resume:
                    log.info("audit %s: resuming from %s", self.audit_id, out / layout.MODEL)
                result = _run_engine(
                    images,
                    masks,
                    out,
                    self.config,
                    device=self.settings.device,
                    resume=resume,
                    report=_Reporter(self, session),
                )
                stored = lifecycle.complete_audit(
                    session, self.store, self.audit_id, out, result.results, result.run
                )
            if not stored:
                return self._ended()
            self._tidy(out)
            log.info("audit %s: succeeded", self.audit_id)
            return Outcome.succeeded
        except _Stop as stop:
            return self._stopped(stop.reason)
        except SoftTimeLimitExceeded:  # Celery's own soft limit, in a prefork pool
            return self._stopped(StopReason.overtime)
        except SegauditError as exc:  # bad input (InputError), or e.g. a stored file is missing
            return _fail(self.sessions, self.store, self.audit_id, exc.code, exc.detail)
        except TRANSIENT as exc:
            self._release(f"the database was unreachable ({type(exc).__name__}); retrying")
            raise unreachable(exc) from exc
        except Exception as exc:  # a bug or a resource error: fail with what it said
            if is_no_space(exc) or (isinstance(exc, OSError) and self.store.is_full()):
                # The engine's own writes (checkpoint, scores, masks) found the storage full.
                full = storage_full("the audit's checkpoint and outputs")
                return _fail(self.sessions, self.store, self.audit_id, full.code, full.detail)
            log.exception("audit %s: failed", self.audit_id)
            message = f"the worker failed: {type(exc).__name__}: {exc}"
            return _fail(self.sessions, self.store, self.audit_id, ErrorCode.WORKER_ERROR, message)
        finally:
            self.watch.stop()

    def _beat(self) -> bool:
        with self.sessions() as session:
            return lifecycle.heartbeat(session, self.audit_id, task_id=self.task_id)

    def _stopped(self, reason: StopReason) -> Outcome:
        if reason == StopReason.shutdown:
            if self._release("the worker shut down; requeued to resume from the checkpoint"):
                log.info("audit %s: released at shutdown", self.audit_id)
                return Outcome.released
            return self._ended()
        if reason == StopReason.overtime:
            limit = self.settings.audit_soft_time_limit_s
            message = (
                f"the audit ran longer than its time limit of {limit:g} s "
                "(SEGAUDIT_AUDIT_SOFT_TIME_LIMIT_S) and was stopped"
            )
            return _fail(self.sessions, self.store, self.audit_id, ErrorCode.TIME_LIMIT, message)
        return self._ended()

    def _ended(self) -> Outcome:
        """The audit left this worker's hands: cancelled, or taken over by another worker."""
        with self.sessions() as session:
            audit = session.get(Audit, self.audit_id, populate_existing=True)
            status = AuditStatus(audit.status) if audit is not None else AuditStatus.cancelled
        if status.finished:
            shutil.rmtree(self.folder, ignore_errors=True)
            log.info("audit %s: stopped, it is %s", self.audit_id, status.value)
            return Outcome.cancelled if status == AuditStatus.cancelled else Outcome.skipped
        log.warning("audit %s: another worker has it now (%s)", self.audit_id, status.value)
        return Outcome.lost

    def _release(self, message: str) -> bool:
        """Back to the queue; the attempt is not counted (it was not the audit's doing)."""
        try:
            with self.sessions() as session:
                return lifecycle.release_audit(
                    session, self.audit_id, message=message, task_id=self.task_id, refund=True
                )
        except TRANSIENT:
            log.warning("audit %s: could not be released; the reconciler will", self.audit_id)
            return False

    def _tidy(self, out: Path) -> None:
        """Keep the trained network and the run's record; the rest is in the store now."""
        shutil.rmtree(self.folder / "inputs", ignore_errors=True)
        for path in out.iterdir():
            if path.name in (layout.MODEL, layout.RUN):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _hard_limit(self) -> None:
        limit = self.settings.audit_time_limit_s
        log.critical("audit %s: past the hard time limit of %.0f s; exiting", self.audit_id, limit)
        message = (
            f"the audit ran past its hard time limit of {limit:g} s "
            "(SEGAUDIT_AUDIT_TIME_LIMIT_S); its worker process was ended"
        )
        try:
            with self.sessions() as session:
                lifecycle.fail_audit(
                    session, self.audit_id, code=ErrorCode.TIME_LIMIT, message=message
                )
        finally:
            os._exit(HARD_LIMIT_EXIT)  # like Celery's hard limit: the stuck process goes


def _run_engine(
    images: Path, masks: Path, out: Path, config: AuditConfig, **kw: Any
) -> AuditResult:
    from models.audit import run_audit  # torch is loaded here, in the process that trains

    return run_audit(images, masks, out, config, overwrite=not kw["resume"], **kw)


class _Reporter:
    """The engine's progress callback: writes progress (at a bounded rate) with the heartbeat,
    and stops the run between steps when the audit was cancelled or taken over, the worker is
    shutting down, or the soft time limit has passed.
    """

    def __init__(self, attempt: _Attempt, session: Session) -> None:
        self.attempt = attempt
        self.session = session
        self.throttle = Throttle(attempt.settings.progress_interval_s)
        self.eta = Eta()

    def __call__(self, p: Progress) -> None:
        attempt = self.attempt
        if attempt.watch.lost.is_set():
            raise _Stop(StopReason.lost)
        if attempt.should_stop():
            raise _Stop(StopReason.shutdown)
        now = time.monotonic()
        if now - attempt.started > attempt.settings.audit_soft_time_limit_s:
            raise _Stop(StopReason.overtime)
        if not self.throttle.due(p.phase, now):
            return
        percent = percent_done(p.phase, p.epoch, p.epochs, p.step, p.steps)
        alive = lifecycle.report_progress(
            self.session,
            attempt.audit_id,
            phase=p.phase,
            epoch=p.epoch or None,
            epochs=p.epochs,
            percent=round(percent, 2),
            eta_seconds=self.eta.update(p.phase, percent, now),
            loss=None if p.loss is None else round(float(p.loss), 6),
            flagged=p.flagged,
            task_id=attempt.task_id,
        )
        if not alive:
            raise _Stop(StopReason.lost)


def _fail(
    sessions: Sessions, store: Store, audit_id: int, code: ErrorCode, message: str
) -> Outcome:
    shutil.rmtree(run_folder(store, audit_id), ignore_errors=True)  # before the end is visible
    with sessions() as session:
        moved = lifecycle.fail_audit(session, audit_id, code=code, message=message)
    log.warning("audit %s: failed (%s): %s", audit_id, code, message)
    return Outcome.failed if moved else Outcome.skipped
