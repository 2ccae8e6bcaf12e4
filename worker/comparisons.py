"""One attempt at a comparison of annotation sets: what its task (``segaudit.run_comparison``,
on the ``cpu`` queue) and the tests run.

    claim -> stage the masks -> per case: models.compare (progress, heartbeat) -> store

Every database write goes through ``app.services.comparison_jobs`` (compare-and-set
transitions), so a duplicate task or another worker's takeover is noticed and nothing is
stored twice. The scores are handed over in memory; only the consensus masks are files.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.services import comparison_jobs as jobs
from app.services.comparison_jobs import ConsensusMask, Staged
from app.settings import Settings
from app.storage import Store
from imaging.errors import ErrorCode, InputError, SegauditError
from imaging.formats import read_mask
from imaging.write import write_array
from models.agreement import Counts, PairScore, agreement_summary, summarise
from worker.pipeline import Outcome
from worker.progress import Throttle
from worker.transient import TRANSIENT, unreachable

if TYPE_CHECKING:
    from imaging.geometry import Loaded

log = logging.getLogger(__name__)

Sessions = sessionmaker[Session]
COMPARE_SHARE = 95.0  # percent of the run spent comparing cases; storing takes the rest


class _Lost(Exception):
    """The comparison is no longer this worker's (taken over by another)."""


def run_comparison_job(
    comparison_id: int,
    *,
    sessions: Sessions,
    store: Store,
    settings: Settings,
    task_id: str | None = None,
) -> Outcome:
    """Claim the comparison and run one attempt at it; returns what became of it.

    Raises ``Transient`` when the database is unreachable; every other error ends the
    comparison ``failed`` with a code and a message.
    """
    try:
        with sessions() as session:
            claimed = jobs.claim_comparison(
                session,
                comparison_id,
                task_id=task_id,
                stale_after_s=settings.heartbeat_timeout_s,
            )
            attempts = None if claimed is None else claimed.attempts
    except TRANSIENT as exc:
        raise unreachable(exc) from exc
    if attempts is None:
        log.info("comparison %s: not claimed (finished or running)", comparison_id)
        return Outcome.skipped
    if attempts > settings.max_attempts:
        message = (
            f"the comparison was started {attempts - 1} times and its worker stopped each time; "
            f"gave up after {settings.max_attempts} attempts (SEGAUDIT_MAX_ATTEMPTS)"
        )
        return _fail(sessions, comparison_id, ErrorCode.WORKER_LOST, message)
    folder = store.new_folder()
    try:
        with sessions() as session:
            staged = jobs.stage_masks(session, store, comparison_id, folder / "inputs")
            report = _Reporter(session, comparison_id, len(staged.cases), settings, task_id)
            scores, counts, consensus = compare_all(staged, folder / "consensus", report=report)
            summary = summarise(scores, set_ids=staged.set_ids, labels=staged.labels)
            if counts:
                summary["staple"] = {"sets": agreement_summary(counts, set_ids=staged.set_ids)}
            stored = jobs.complete_comparison(
                session,
                store,
                comparison_id,
                scores=scores,
                staged=staged,
                summary=summary,
                consensus=consensus,
            )
        if not stored:
            raise _Lost
        log.info("comparison %s: succeeded", comparison_id)
        return Outcome.succeeded
    except _Lost:
        log.warning("comparison %s: no longer this worker's; stored nothing", comparison_id)
        return Outcome.lost
    except SegauditError as exc:  # an unreadable mask, a stored file missing
        return _fail(sessions, comparison_id, exc.code, exc.detail)
    except TRANSIENT as exc:
        _release(sessions, comparison_id, task_id, type(exc).__name__)
        raise unreachable(exc) from exc
    except Exception as exc:  # a bug or a resource error: fail with what it said
        log.exception("comparison %s: failed", comparison_id)
        message = f"the worker failed: {type(exc).__name__}: {exc}"
        return _fail(sessions, comparison_id, ErrorCode.WORKER_ERROR, message)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Reporter:
    """Progress after each case, at a bounded rate; each report is the heartbeat too."""

    def __init__(
        self,
        session: Session,
        comparison_id: int,
        total: int,
        settings: Settings,
        task_id: str | None,
    ) -> None:
        self.session = session
        self.comparison_id = comparison_id
        self.total = total
        self.task_id = task_id
        self.throttle = Throttle(settings.progress_interval_s)

    def __call__(self, done: int) -> None:
        if done < self.total and not self.throttle.due("compare", time.monotonic()):
            return
        percent = round(COMPARE_SHARE * done / max(self.total, 1), 2)
        if not jobs.report_progress(
            self.session,
            self.comparison_id,
            cases_done=done,
            percent=percent,
            task_id=self.task_id,
        ):
            raise _Lost


def compare_all(
    staged: Staged, out: Path, *, report: Callable[[int], None] | None = None
) -> tuple[list[PairScore], dict[int, dict[int, Counts]], list[ConsensusMask]]:
    """Compare every staged case; with three or more sets, STAPLE's consensus of each case,
    written under ``out`` in the first set's format, and each set's counts against it.
    """
    from models.compare import against, compare_case, staple  # torch is loaded here

    scores: list[PairScore] = []
    counts: dict[int, dict[int, Counts]] = {}
    consensus: list[ConsensusMask] = []
    for done, case in enumerate(staged.cases, start=1):
        loaded = [read_mask(path, case=case.name) for path in case.masks]
        masks = _arrays(loaded, case.shape, case.name)
        scores += compare_case(masks, case=case.name, labels=staged.labels, spacing=case.spacing)
        if len(masks) >= 3:
            agreed = staple(masks, labels=staged.labels)
            for position, mask in enumerate(masks):
                mine = counts.setdefault(position, {})
                for label in staged.labels:
                    mine[label] = mine.get(label, Counts()) + against(mask, agreed, label)
            path = out / case.masks[0].name
            write_array(path, agreed, loaded[0].geometry)
            consensus.append(ConsensusMask(case.case_id, path, int(agreed.max(initial=0))))
        if report is not None:
            report(done)
    return scores, counts, consensus


def _arrays(loaded: Sequence[Loaded], shape: tuple[int, ...], case: str) -> list[np.ndarray]:
    arrays = [np.asarray(m.array).astype(np.int64) for m in loaded]
    for array in arrays:
        if tuple(array.shape) != shape:  # checked at upload: a changed file in the store
            raise InputError(
                ErrorCode.SHAPE_MISMATCH,
                f"a mask has shape {array.shape}, not the case's {shape}",
                case=case,
            )
    return arrays


def _fail(sessions: Sessions, comparison_id: int, code: ErrorCode, message: str) -> Outcome:
    with sessions() as session:
        moved = jobs.fail_comparison(session, comparison_id, code=code, message=message)
    log.warning("comparison %s: failed (%s): %s", comparison_id, code, message)
    return Outcome.failed if moved else Outcome.skipped


def _release(sessions: Sessions, comparison_id: int, task_id: str | None, why: str) -> None:
    try:
        with sessions() as session:
            jobs.release_comparison(
                session,
                comparison_id,
                message=f"the database was unreachable ({why}); retrying",
                task_id=task_id,
            )
    except TRANSIENT:
        log.warning("comparison %s: could not be released", comparison_id)
