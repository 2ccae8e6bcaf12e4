"""The contract between the API and the workers: which task, on which queue, with what payload.

The API sends tasks by name and never imports the worker's code (or torch):

- task ``segaudit.run_audit`` (``RUN_AUDIT``), on the queue named by ``SEGAUDIT_AUDIT_QUEUE``
  (default ``gpu``, ``AUDIT_QUEUE``);
- payload: ``args=[audit_id]`` (an int), no kwargs; JSON. The worker re-reads the audit row and
  moves it through the state machine itself (``app.services.lifecycle``), so a redelivered or
  duplicate task is harmless;
- the row is committed before the task is sent (``app.services.audits.submit_audit``).

The broker is ``SEGAUDIT_BROKER_URL``: Redis in production; by default kombu's SQLAlchemy
transport on a SQLite file, which needs no server. Long audits need the worker to set
``worker_prefetch_multiplier=1``, ``task_acks_late=True`` and a Redis ``visibility_timeout``
longer than the longest audit.
"""

from __future__ import annotations

from celery import Celery

from app.settings import ensure_sqlite_folder

RUN_AUDIT = "segaudit.run_audit"
AUDIT_QUEUE = "gpu"
# A comparison of annotation sets (``args=[comparison_id]``), on ``SEGAUDIT_CPU_QUEUE``.
RUN_COMPARISON = "segaudit.run_comparison"
CPU_QUEUE = "cpu"


def make_client(broker_url: str) -> Celery:
    """A Celery app used only to send tasks: no result backend, fails fast when the broker is
    down (a request must not hang on it).
    """
    ensure_sqlite_folder(broker_url)
    client = Celery("segaudit-api", broker=broker_url, set_as_current=False)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=False,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
    )
    return client


def send_audit(client: Celery, audit_id: int, *, queue: str = AUDIT_QUEUE) -> str:
    """Send ``run_audit(audit_id)`` to ``queue``; returns the task id."""
    result = client.send_task(RUN_AUDIT, args=[audit_id], queue=queue)
    return str(result.id)


def send_comparison(client: Celery, comparison_id: int, *, queue: str = CPU_QUEUE) -> str:
    """Send ``run_comparison(comparison_id)`` to ``queue``; returns the task id."""
    result = client.send_task(RUN_COMPARISON, args=[comparison_id], queue=queue)
    return str(result.id)
