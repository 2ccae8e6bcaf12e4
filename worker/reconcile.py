"""The reconciler: the database, not the broker, says which audits must run.

Every worker runs it in a thread, every ``SEGAUDIT_RECONCILE_INTERVAL_S``. Each pass

1. puts back in the queue the running audits whose heartbeat stopped (their worker was killed,
   ran out of memory or lost its host) and sends them again; they resume from their checkpoint.
   After ``SEGAUDIT_MAX_ATTEMPTS`` attempts an audit ends ``failed`` (``worker_lost``) instead;
2. sends again the queued audits when the audit queue holds fewer messages than there are
   queued audits: the broker lost messages (a Redis restart without persistence, a flushed
   database). A duplicate message is harmless: the second one finds the audit claimed.

Every move is a compare-and-set in ``app.services.lifecycle``, so any number of workers may run it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from celery import Celery

from app.db.base import utcnow
from app.queue import send_audit
from app.services import lifecycle
from app.settings import Settings
from worker.context import Context
from worker.pipeline import Sessions
from worker.transient import TRANSIENT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pass:
    """What one pass did."""

    requeued: list[int]  # running audits whose worker died, sent again
    failed: list[int]  # the same, out of attempts
    resent: list[int]  # queued audits whose message was missing, sent again


def reconcile(sessions: Sessions, client: Celery, settings: Settings) -> Pass:
    """One pass of the reconciler (see the module's docstring)."""
    with sessions() as session:
        reclaimed = lifecycle.reclaim_stale(
            session,
            stale_after_s=settings.heartbeat_timeout_s,
            max_attempts=settings.max_attempts,
        )
        for audit_id in reclaimed.requeued:
            send_audit(client, audit_id, queue=settings.audit_queue)
        grace = dt.timedelta(seconds=settings.reconcile_interval_s)
        queued = lifecycle.queued_audit_ids(session, created_before=utcnow() - grace)
    resent: list[int] = []
    if queued and waiting_messages(client, settings.audit_queue) < len(queued):
        resent = [a for a in queued if a not in reclaimed.requeued]
        for audit_id in resent:
            send_audit(client, audit_id, queue=settings.audit_queue)
    done = Pass(reclaimed.requeued, reclaimed.failed, resent)
    if done.requeued or done.failed or done.resent:
        log.warning(
            "reconciler: requeued %s (worker lost), failed %s (out of attempts), re-sent %s "
            "(message missing)",
            done.requeued,
            done.failed,
            done.resent,
        )
    return done


def waiting_messages(client: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not those a worker holds unacknowledged)."""
    with client.connection_for_write() as connection, connection.channel() as channel:
        return int(channel.queue_declare(queue=queue).message_count)


class Reconciler(threading.Thread):
    def __init__(self, client: Celery, ctx: Context) -> None:
        super().__init__(name="segaudit-reconciler", daemon=True)
        self.client = client
        self.ctx = ctx
        self._stop_event = threading.Event()

    def run(self) -> None:
        settings = self.ctx.settings
        while True:
            try:
                reconcile(self.ctx.sessions, self.client, settings)
            except TRANSIENT as exc:
                log.warning("reconciler: database or broker unreachable: %s", exc)
            except Exception:  # the loop must outlive any one pass
                log.exception("reconciler: pass failed")
            if self._stop_event.wait(settings.reconcile_interval_s):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


_running: list[Reconciler] = []


def start_reconciler(client: Celery, ctx: Context) -> None:
    if not _running:
        thread = Reconciler(client, ctx)
        thread.start()
        _running.append(thread)
        log.info("reconciler: every %.0f s", ctx.settings.reconcile_interval_s)


def stop_reconciler() -> None:
    while _running:
        _running.pop().stop()
