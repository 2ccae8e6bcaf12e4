"""The pipeline in this process, on real PostgreSQL: a worker shutting down hands its audit
back with its checkpoint, and the next attempt resumes; the soft time limit fails an audit.
"""

from __future__ import annotations

import json

import pytest

from app.db.session import make_engine, make_sessions
from app.services import lifecycle
from app.settings import Settings
from app.storage import Store
from imaging import layout
from tests.app.conftest import load_dataset, submit
from tests.worker.conftest import TINY
from worker.pipeline import Outcome, run_audit_job, run_folder
from worker.transient import Transient

pytestmark = pytest.mark.usefixtures("one_thread")  # torch in this process: one thread


def test_a_shutdown_hands_the_audit_back_and_the_next_attempt_resumes(
    make_service, hc18_cases, one_thread
):
    service = make_service()
    audit_id = submit(service.api, load_dataset(service.api, *hc18_cases), **TINY)["id"]
    store, settings = service.api.store, service.settings
    checkpoint = run_folder(store, audit_id) / "out" / layout.MODEL
    job = {"sessions": service.api.sessions, "store": store, "settings": settings}

    outcome = run_audit_job(audit_id, **job, task_id="t-1", should_stop=checkpoint.is_file)
    assert outcome is Outcome.released
    audit = service.audit(audit_id)
    assert audit.status == "queued" and "worker shut down" in audit.error_message
    assert checkpoint.is_file()  # kept for the next attempt

    assert run_audit_job(audit_id, **job, task_id="t-2") is Outcome.succeeded
    audit = service.audit(audit_id)
    # A shutdown does not use up an attempt: deploys must not fail long audits.
    assert (audit.status, audit.attempts, audit.task_id) == ("succeeded", 1, "t-2")
    run = json.loads((checkpoint.parent / layout.RUN).read_text())
    assert run["resumed_from_epoch"] >= 1 and len(run["history"]) == TINY["epochs"]
    assert service.result_counts(audit_id) == (8, 8)
    assert run_audit_job(audit_id, **job, task_id="t-1") is Outcome.skipped  # a redelivery


def test_past_the_soft_time_limit_an_audit_fails(make_service, hc18_cases):
    service = make_service(audit_soft_time_limit_s=0.5)
    audit_id = submit(service.api, load_dataset(service.api, *hc18_cases), **TINY)["id"]
    job = {"sessions": service.api.sessions, "store": service.api.store}
    assert run_audit_job(audit_id, **job, settings=service.settings) is Outcome.failed
    audit = service.audit(audit_id)
    assert audit.error_code == "time_limit" and "time limit of 0.5 s" in audit.error_message
    assert not run_folder(service.api.store, audit_id).exists()


def test_a_takeover_stops_the_first_worker_at_its_next_report(make_service, hc18_cases):
    service = make_service()
    audit_id = submit(service.api, load_dataset(service.api, *hc18_cases), **TINY)["id"]
    job = {"sessions": service.api.sessions, "store": service.api.store}
    taken: list[bool] = []

    def take_over() -> bool:  # another worker claims the audit while this one trains
        if not taken and (run_folder(service.api.store, audit_id) / "out").is_dir():
            with service.api.sessions() as session:
                lifecycle.release_audit(session, audit_id)
                taken.append(lifecycle.claim_audit(session, audit_id, task_id="t-2") is not None)
        return False

    outcome = run_audit_job(
        audit_id, **job, settings=service.settings, task_id="t-1", should_stop=take_over
    )
    assert taken == [True] and outcome is Outcome.lost
    audit = service.audit(audit_id)
    assert (audit.status, audit.task_id) == ("running", "t-2")
    assert service.result_counts(audit_id) == (0, 0)  # the first worker stored nothing


def test_an_unreachable_database_is_transient(tmp_path):
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")  # nothing listens
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(Transient, match="the database or the broker was unreachable"):
        run_audit_job(1, sessions=make_sessions(engine), store=Store(tmp_path), settings=settings)
