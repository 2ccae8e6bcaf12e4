"""The reconciler, one pass at a time, on real PostgreSQL and Redis: a dead worker's audit is
requeued (or failed when out of attempts), a queued audit whose message is lost is sent again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
import redis
from sqlalchemy import update

from app.db.tables import Audit
from app.queue import make_client
from app.services import lifecycle
from tests.app.conftest import load_dataset, submit
from tests.worker.conftest import TINY
from worker.reconcile import reconcile


@pytest.fixture
def setup(make_service, hc18_cases):
    service = make_service(reconcile_interval_s=30)  # also the grace of a new audit
    client = make_client(service.settings.broker_url)
    broker = redis.Redis.from_url(service.settings.broker_url)
    loaded = load_dataset(service.api, *hc18_cases)
    yield service, client, broker, loaded
    client.close()


def _age(service, audit_id: int, *, seconds: float, column: str) -> None:
    """Make the audit's heartbeat (or creation) ``seconds`` old."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    with service.api.sessions() as session:
        session.execute(update(Audit).where(Audit.id == audit_id).values({column: then}))
        session.commit()


def _messages(broker: redis.Redis, queue: str) -> list[int]:
    """The audit ids of the messages waiting in ``queue``."""
    bodies = [json.loads(m)["body"] for m in broker.lrange(queue, 0, -1)]
    return [json.loads(base64.b64decode(b))[0][0] for b in bodies]


def test_a_running_audit_whose_heartbeat_stopped_is_requeued_then_failed(setup):
    service, client, broker, loaded = setup
    queue = service.settings.audit_queue
    audit_id = submit(service.api, loaded, **TINY)["id"]
    broker.delete(queue)
    with service.api.sessions() as session:
        assert lifecycle.claim_audit(session, audit_id, task_id="t-1") is not None
    sessions = service.api.sessions
    assert reconcile(sessions, client, service.settings).requeued == []  # heartbeat fresh

    _age(service, audit_id, seconds=10, column="heartbeat_at")  # the timeout is 3 s
    done = reconcile(sessions, client, service.settings)
    assert (done.requeued, done.failed, done.resent) == ([audit_id], [], [])
    audit = service.audit(audit_id)
    assert audit.status == "queued" and "requeued to resume" in audit.error_message
    assert _messages(broker, queue) == [audit_id]

    for attempt in (2, 3):  # claimed again and lost again, up to max_attempts (3)
        with service.api.sessions() as session:
            assert (
                lifecycle.claim_audit(session, audit_id, task_id=f"t-{attempt}").attempts == attempt
            )
        _age(service, audit_id, seconds=10, column="heartbeat_at")
        done = reconcile(sessions, client, service.settings)
    assert (done.requeued, done.failed) == ([], [audit_id])
    audit = service.audit(audit_id)
    assert (audit.status, audit.error_code) == ("failed", "worker_lost")
    assert "gave up after 3 attempts" in audit.error_message


def test_a_queued_audit_is_sent_again_only_when_its_message_is_missing(setup):
    service, client, broker, loaded = setup
    queue = service.settings.audit_queue
    sessions = service.api.sessions
    first = submit(service.api, loaded, **TINY)["id"]
    second = submit(service.api, loaded, **TINY)["id"]
    for audit_id in (first, second):
        _age(service, audit_id, seconds=60, column="created_at")
    assert reconcile(sessions, client, service.settings).resent == []  # both messages wait
    assert sorted(_messages(broker, queue)) == [first, second]

    broker.delete(queue)  # the broker lost them
    assert reconcile(sessions, client, service.settings).resent == [first, second]
    assert sorted(_messages(broker, queue)) == [first, second]
    assert reconcile(sessions, client, service.settings).resent == []

    third = submit(service.api, loaded, **TINY)["id"]  # just created: its message is on its way
    broker.delete(queue)
    assert reconcile(sessions, client, service.settings).resent == [first, second]
    assert third not in _messages(broker, queue)
