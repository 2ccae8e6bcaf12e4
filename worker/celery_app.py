"""The Celery app of the workers, configured from the service's one settings object.

``celery -A worker.celery_app worker ...`` works, but ``segaudit worker`` is the way to start
one (it picks the pool, the queues and the GPU). Audits are long and idempotent, so:

- ``task_acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged only when
  its task has finished, so a worker killed mid-audit leaves it to be delivered again;
- ``worker_prefetch_multiplier=1``: a busy worker holds no second audit hostage;
- Redis ``visibility_timeout`` (``SEGAUDIT_VISIBILITY_TIMEOUT_S``) longer than the hard time
  limit, so a running audit is never delivered twice; a dead worker's audit is picked up long
  before that by the reconciler (``worker.reconcile``);
- soft and hard time limits (``SEGAUDIT_AUDIT_SOFT_TIME_LIMIT_S``, ``..._TIME_LIMIT_S``). Celery
  enforces them in prefork pools only; audits run in ``--pool solo``, where the pipeline
  enforces the same limits itself;
- the queues ``SEGAUDIT_AUDIT_QUEUE`` (default ``gpu``) and ``SEGAUDIT_CPU_QUEUE`` (``cpu``)
  are declared, and ``task_create_missing_queues=False``: ``--queues gppu`` is refused at start
  instead of creating a queue that nobody feeds.

The tasks (``worker.tasks``) import this module, never the other way round: the app names them
in ``include``, and a worker imports them when it starts (``app.loader.import_default_modules``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import Token
from typing import Any, TypeVar

from celery import Celery, signals
from kombu.entity import Exchange, Queue

from app import logs
from app.queue import RUN_AUDIT, RUN_COMPARISON
from app.settings import Settings, ensure_sqlite_folder, get_settings
from worker.context import context


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``: broker, queues, acknowledgement and time limits."""
    ensure_sqlite_folder(settings.broker_url)
    app = Celery(
        "segaudit",
        broker=settings.broker_url,
        set_as_current=False,
        include=["worker.tasks"],  # imported when a worker starts; they import this module
    )
    names = sorted({settings.audit_queue, settings.cpu_queue})
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the database holds every outcome
        task_queues=[_queue(name) for name in names],
        task_default_queue=settings.cpu_queue,
        task_routes={
            RUN_AUDIT: {"queue": settings.audit_queue},
            RUN_COMPARISON: {"queue": settings.cpu_queue},
        },
        task_create_missing_queues=False,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # No-ops under ``--pool solo`` (a solo worker that dies leaves its task unacknowledged;
        # the pipeline enforces the time limits itself); kept for a prefork pool
        # (``celery -A worker.celery_app worker``), where Celery applies them.
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.audit_soft_time_limit_s,
        task_time_limit=settings.audit_time_limit_s,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker, forever
        worker_send_task_events=True,  # for Flower
    )
    return app


def _queue(name: str) -> Queue:
    """A durable direct queue ``name`` on an exchange of the same name."""
    # kombu leaves Queue and Exchange unannotated.
    queue: Queue = Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
    return queue


def _transport_options(settings: Settings) -> dict[str, Any]:
    if not settings.broker_url.startswith(("redis://", "rediss://", "sentinel://")):
        # kombu's SQLAlchemy transport: no redelivery of a dead worker's message; the
        # reconciler sends its audit again.
        return {}
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # Look for unacknowledged messages past the timeout every minute.
        "unacked_restore_interval": 60,
        "unacked_restore_throttle": 1,
    }


celery = make_celery(get_settings())
celery.conf.segaudit_reconcile = True  # segaudit worker --no-reconcile turns it off

# Set when the worker starts a warm shutdown (SIGTERM): a running audit stops at its next step
# and goes back to the queue instead of holding the shutdown up until it has finished.
shutdown_requested = threading.Event()

_Handler = TypeVar("_Handler", bound=Callable[..., None])


def _on(signal: Any) -> Callable[[_Handler], _Handler]:
    """``@signal.connect``, typed (Celery's signals are unannotated): the handler is returned."""

    def connect(handler: _Handler) -> _Handler:
        signal.connect(handler)
        return handler

    return connect


@_on(signals.setup_logging)
def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    """The service's one log format instead of Celery's (a receiver here stops Celery's own)."""
    logs.configure(loglevel or "INFO")


@_on(signals.task_prerun)
def _on_task_start(task_id: str | None = None, **_: Any) -> None:
    """The task's lines carry its Celery task id (an audit's ``task_id``) as their request id."""
    _task_ids.append(logs.request_id.set(task_id or logs.NO_REQUEST))


@_on(signals.task_postrun)
def _on_task_end(**_: Any) -> None:
    if _task_ids:
        logs.request_id.reset(_task_ids.pop())


_task_ids: list[Token[str]] = []


@_on(signals.worker_shutting_down)
def _on_shutting_down(**_: Any) -> None:
    shutdown_requested.set()


@_on(signals.worker_ready)
def _on_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None) or celery
    if app.conf.get("segaudit_reconcile", True):
        from worker.reconcile import start_reconciler

        start_reconciler(app, context())


@_on(signals.worker_shutdown)
def _on_shutdown(**_: Any) -> None:
    from worker.reconcile import stop_reconciler

    stop_reconciler()
