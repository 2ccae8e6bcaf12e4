"""Faults of the servers under a running service, with throwaway servers (``tests.throwaway``)
the tests stop and start: PostgreSQL restarted during an audit and while a worker claims one,
Redis down around an upload and an audit's submission. Each audit must end ``succeeded`` with
one result row per case, or be refused with a code, and nothing may be lost or stored twice.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.tables import Audit, StoredFile
from imaging import layout
from tests.app.conftest import load_dataset, submit, unavailable
from tests.throwaway import Postgres, Redis, SmallDisk, free_port, small_disk  # noqa: F401
from tests.worker.conftest import TINY, Service, wait_until
from worker.pipeline import Outcome, run_audit_job, run_folder


@pytest.fixture
def throwaway_pg() -> Iterator[Postgres]:
    try:
        server = Postgres.create()
        server.start()
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        unavailable("a throwaway PostgreSQL (initdb and pg_ctl as the postgres user)", exc)
    yield server
    server.remove()


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[Redis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = Redis(folder, free_port())
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        unavailable("a throwaway Redis (redis-server)", exc)
    yield server
    server.stop()


def _pg_service(make_service, server: Postgres) -> Service:  # type: ignore[no-untyped-def]
    url = server.create_database("segaudit")
    # Retries a second apart, so the worker's next try finds the database back soon.
    return make_service(database_url=url, transient_retry_delay_s=1)  # type: ignore[no-any-return]


def _file_rows(service: Service) -> int:
    with service.api.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(StoredFile)) or 0)


def test_an_audit_survives_a_postgresql_restart_mid_training(
    make_service, hc18_cases, throwaway_pg
):
    service = _pg_service(make_service, throwaway_pg)
    loaded = load_dataset(service.api, *hc18_cases)
    files_before = _file_rows(service)
    worker = service.worker()
    audit_id = submit(service.api, loaded, **{**TINY, "epochs": 24})["id"]
    checkpoint = run_folder(service.api.store, audit_id) / "out" / layout.MODEL

    def mid_training() -> bool:
        audit = service.audit(audit_id)
        return checkpoint.is_file() and audit.phase == "train" and (audit.epoch or 0) >= 3

    wait_until(mid_training, 90, "the audit to be training past a checkpoint", worker)
    throwaway_pg.stop()  # open connections are cut, as in a restart or a failover
    down = service.api.get(f"/v1/audits/{audit_id}")
    assert down.status_code == 503 and down.json()["code"] == "database_unavailable"
    worker.wait_for_log(f"audit {audit_id}: the database or the broker was unreachable", timeout=30)
    time.sleep(service.settings.heartbeat_timeout_s + 1)  # its heartbeat goes stale meanwhile
    throwaway_pg.start()

    audit = service.wait_status(audit_id, "succeeded", worker, timeout=150)
    assert service.api.get(f"/v1/audits/{audit_id}").status_code == 200  # the API reconnected
    assert audit.error_code is None
    assert 2 <= audit.attempts <= service.settings.max_attempts
    run = json.loads((checkpoint.parent / layout.RUN).read_text())
    assert 1 <= run["resumed_from_epoch"] < 24  # from the checkpoint, not from scratch
    assert len(run["history"]) == 24
    assert service.result_counts(audit_id) == (8, 8)  # one result row per case, not two
    assert _file_rows(service) - files_before == 8 * 3  # cleansed, pseudo-label, issue map


def test_a_worker_that_finds_postgresql_down_waits_and_runs_the_audit_once(
    make_service, hc18_cases, throwaway_pg
):
    service = _pg_service(make_service, throwaway_pg)
    audit_id = submit(service.api, load_dataset(service.api, *hc18_cases), **TINY)["id"]
    throwaway_pg.stop()
    worker = service.spawn("worker", "worker", "--loglevel=info")
    # Its claim fails, and the task is retried a second, then 2, 4, ... seconds later.
    worker.wait_for_log("the database or the broker was unreachable", timeout=90)
    throwaway_pg.start()

    audit = service.wait_status(audit_id, "succeeded", worker, timeout=150)
    assert audit.attempts == 1  # the failed claims changed nothing
    assert service.result_counts(audit_id) == (8, 8)


def test_redis_down_around_an_upload_refuses_only_the_submission_and_loses_nothing(
    make_service, hc18_cases, throwaway_redis
):
    service = make_service(broker_url=throwaway_redis.url)
    api = service.api
    images, masks = hc18_cases
    throwaway_redis.stop()
    # An upload does not need the broker: it succeeds while Redis is down.
    loaded = load_dataset(api, images, masks)
    ready = api.client.get("/readyz")
    assert ready.status_code == 503 and "broker: not reachable" in ready.json()["detail"]

    started = time.monotonic()
    refused = api.post(
        "/v1/audits",
        json={
            "dataset_id": loaded.dataset_id,
            "annotation_set_id": loaded.set_id,
            "parameters": TINY,
        },
    )
    took = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "broker_unavailable"
    assert took < 15  # the request does not hang on the broker
    with api.sessions() as session:
        audits = session.execute(select(Audit.id, Audit.status, Audit.error_code)).all()
    assert len(audits) == 1  # the refused audit is kept as failed, never left queued
    failed_id, status, code = audits[0]
    assert (status, code) == ("failed", "broker_unavailable")

    throwaway_redis.start()  # back, empty
    worker = service.worker()
    audit_id = submit(api, loaded, **TINY)["id"]  # the same request, sent again
    service.wait_status(audit_id, "succeeded", worker)
    assert service.result_counts(audit_id) == (8, 8)
    time.sleep(2 * service.settings.reconcile_interval_s)  # the reconciler ran meanwhile
    assert service.audit(failed_id).status == "failed"
    assert service.result_counts(failed_id) == (0, 0)
    assert f"re-sent [{failed_id}]" not in worker.text()


def test_a_full_disk_fails_the_audit_with_storage_full_and_a_new_one_succeeds(
    make_service,
    hc18_cases,
    small_disk: SmallDisk,  # noqa: F811
    one_thread: None,
):
    """The worker (in this process) finds the storage full: its checkpoint cannot be written.
    The audit fails with a code that says so, leaves no run folder, rows or blobs, and the
    same audit submitted again once space is freed succeeds.
    """
    service = make_service(storage_dir=small_disk.path)
    loaded = load_dataset(service.api, *hc18_cases)
    store = service.api.store
    job = {"sessions": service.api.sessions, "store": store, "settings": service.settings}
    files_before, blobs_before = _file_rows(service), sorted(store.blob_paths())
    audit_id = submit(service.api, loaded, **TINY)["id"]
    small_disk.fill(leave=0)

    assert run_audit_job(audit_id, **job, task_id="t-1") is Outcome.failed
    audit = service.audit(audit_id)
    assert audit.error_code == "storage_full"
    assert "no space left" in audit.error_message and "try again" in audit.error_message
    assert not run_folder(store, audit_id).exists()  # its partial checkpoint went with it
    assert service.result_counts(audit_id) == (0, 0)
    assert (_file_rows(service), sorted(store.blob_paths())) == (files_before, blobs_before)
    response = service.api.get(f"/v1/audits/{audit_id}")
    assert response.json()["error"]["code"] == "storage_full"

    small_disk.free()
    again = submit(service.api, loaded, **TINY)["id"]
    assert run_audit_job(again, **job, task_id="t-2") is Outcome.succeeded
    assert service.result_counts(again) == (8, 8)
