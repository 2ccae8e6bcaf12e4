"""The tasks: thin, like views. They take an audit id, call the pipeline, and turn its outcome
into Celery's terms (a retry, a requeue); the audit row holds the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task
from celery.exceptions import Reject

from app.queue import RUN_AUDIT, RUN_COMPARISON
from worker.celery_app import celery, shutdown_requested
from worker.comparisons import run_comparison_job
from worker.context import context
from worker.pipeline import Outcome, run_audit_job
from worker.transient import Transient

log = logging.getLogger(__name__)


def _bound_task(name: str) -> Callable[[Callable[..., str]], Task]:
    """``@celery.task(name=name, bind=True)``, typed (Celery is unannotated)."""

    def register(run: Callable[..., str]) -> Task:
        task: Task = celery.task(name=name, bind=True)(run)
        return task

    return register


@_bound_task(RUN_AUDIT)
def run_audit(self: Task, audit_id: int) -> str:
    """Run audit ``audit_id`` (a redelivered or duplicate message finds it claimed, and ends)."""
    ctx = context()
    try:
        outcome = run_audit_job(
            audit_id,
            sessions=ctx.sessions,
            store=ctx.store,
            settings=ctx.settings,
            task_id=self.request.id,
            should_stop=shutdown_requested.is_set,
        )
    except Transient as exc:
        retries = self.request.retries
        delay = ctx.settings.transient_retry_delay_s * 2**retries
        log.warning("audit %s: %s; retry %s in %.0f s", audit_id, exc, retries + 1, delay)
        retry = self.retry(exc=exc, countdown=delay, max_retries=ctx.settings.transient_retries)
        raise retry from exc
    if outcome is Outcome.released:
        raise Reject(f"audit {audit_id}: the worker is shutting down", requeue=True)
    return outcome.value


@_bound_task(RUN_COMPARISON)
def run_comparison(self: Task, comparison_id: int) -> str:
    """Run comparison ``comparison_id`` (a duplicate message finds it claimed, and ends)."""
    ctx = context()
    try:
        outcome = run_comparison_job(
            comparison_id,
            sessions=ctx.sessions,
            store=ctx.store,
            settings=ctx.settings,
            task_id=self.request.id,
        )
    except Transient as exc:
        retries = self.request.retries
        delay = ctx.settings.transient_retry_delay_s * 2**retries
        log.warning("comparison %s: %s; retry %s in %.0f s", comparison_id, exc, retries + 1, delay)
        retry = self.retry(exc=exc, countdown=delay, max_retries=ctx.settings.transient_retries)
        raise retry from exc
    return outcome.value
