"""Real ``segaudit worker`` processes on real PostgreSQL and Redis: an audit end to end over
HTTP, a worker killed mid-training, a cancel, a Redis restart, and bad input.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import redis
from PIL import Image
from sqlalchemy import select

from app.db.tables import Case, StoredFile
from imaging import layout
from tests.app.conftest import load_dataset, submit
from tests.worker.conftest import TINY, free_port, wait_until
from worker.pipeline import run_folder

# Enough epochs of the tiny network that the training phase outlasts a few of the watcher's
# polls: with 6 (about 0.24 s of training, 2.4 s with 40) a full test run once saw none in 92
# polls.
WATCHED_EPOCHS = 40


def test_an_upload_over_http_is_audited_by_a_worker(make_service, hc18_cases, tmp_path):
    service = make_service()
    server = service.spawn("server", "serve", "--port", "0", "--url-file", "url")
    url_file = service.tmp / "url"
    wait_until(url_file.exists, 30, "the server's URL", server)
    url = url_file.read_text().strip()
    wait_until(lambda: _ready(url), 30, "the server to be ready", server)
    worker = service.worker()
    images, masks = hc18_cases
    key = service.api.headers["annotator"]["X-API-Key"]
    seen: list[dict] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(url, key, seen, stop), daemon=True)
    watcher.start()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "submit", "--server", url, "--api-key", key]
        + ["--images", str(images[0].parent), "--masks", str(masks[0].parent)]
        + [
            "--parameters",
            json.dumps({**TINY, "epochs": WATCHED_EPOCHS}),
            "--wait",
            "--poll",
            "0.2",
        ]
        + ["--out", str(tmp_path / "export")],
        capture_output=True,
        text=True,
        timeout=180,
        env=service.env,
    )
    stop.set()
    watcher.join()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{worker.tail()}"
    audit_id = int(done.stdout.split("audit ", 1)[1].split(":")[0])

    # Progress was visible while the worker trained.
    training = [a for a in seen if a["status"] == "running" and a["progress"]["phase"] == "train"]
    assert training, f"no training progress seen in {len(seen)} polls"
    assert all(0 < a["progress"]["percent"] < 100 for a in training)
    assert all(a["progress"]["epochs"] == WATCHED_EPOCHS for a in training)

    with httpx.Client(base_url=url, headers={"X-API-Key": key}) as client:
        audit = client.get(f"/v1/audits/{audit_id}").json()
        assert audit["status"] == "succeeded" and audit["attempts"] == 1
        assert audit["progress"]["percent"] == 100.0 and audit["summary"]["cases"] == 8
        results = client.get(f"/v1/audits/{audit_id}/cases", params={"limit": 50}).json()
        assert results["total"] == 8
        assert {r["case"] for r in results["items"]} == {m.stem for m in masks}
        assert all(0.0 <= r["noise_score"] <= 1.0 for r in results["items"])
        case = masks[3].stem
        response = client.get(f"/v1/audits/{audit_id}/cases/{case}/cleansed-mask")
        assert response.status_code == 200
    cleansed = np.asarray(Image.open(io.BytesIO(response.content)))
    given = np.asarray(Image.open(masks[3]))
    assert cleansed.shape == given.shape == (540, 800)
    assert set(np.unique(cleansed)) <= {0, 1}

    # The export that submit downloaded: scores for every case and every cleansed mask.
    export = tmp_path / "export"
    assert sorted(p.name for p in (export / "cleansed").iterdir()) == [m.name for m in masks]
    assert len((export / "scores.csv").read_text().splitlines()) == 9
    # The run folder keeps the trained network and the run's record, nothing else.
    out = run_folder(service.api.store, audit_id) / "out"
    assert sorted(p.name for p in out.iterdir()) == [layout.MODEL, layout.RUN]


def test_a_killed_worker_is_replaced_and_the_audit_resumes(make_service, hc18_cases):
    service = make_service()
    loaded = load_dataset(service.api, *hc18_cases)
    worker = service.worker()
    audit_id = submit(service.api, loaded, **{**TINY, "epochs": 24})["id"]
    checkpoint = run_folder(service.api.store, audit_id) / "out" / layout.MODEL

    def mid_training() -> bool:
        audit = service.audit(audit_id)
        return checkpoint.is_file() and audit.phase == "train" and (audit.epoch or 0) >= 4

    wait_until(mid_training, 90, "the audit to be training past a checkpoint", worker)
    worker.kill()  # SIGKILL: no cleanup, no acknowledgement
    killed = service.audit(audit_id)
    assert killed.status == "running" and killed.epoch < 24

    replacement = service.worker()
    audit = service.wait_status(audit_id, "succeeded", replacement)
    assert audit.attempts == 2
    assert f"requeued [{audit_id}]" in replacement.text()  # its heartbeat had stopped
    run = json.loads((checkpoint.parent / layout.RUN).read_text())
    assert 1 <= run["resumed_from_epoch"] < 24  # resumed from a checkpoint, not from scratch
    assert len(run["history"]) == 24
    assert service.result_counts(audit_id) == (8, 8)  # one result row per case


def test_a_worker_told_to_stop_hands_its_audit_back(make_service, hc18_cases):
    service = make_service()
    loaded = load_dataset(service.api, *hc18_cases)
    worker = service.worker()
    audit_id = submit(service.api, loaded, **{**TINY, "epochs": 200})["id"]
    checkpoint = run_folder(service.api.store, audit_id) / "out" / layout.MODEL
    wait_until(checkpoint.is_file, 90, "a checkpoint", worker)
    stopped_at = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)  # a deploy, docker compose stop
    worker.process.wait(30)
    assert time.monotonic() - stopped_at < 20  # it did not train the 200 epochs first
    audit = service.audit(audit_id)
    assert audit.status == "queued" and "worker shut down" in audit.error_message
    assert audit.attempts == 0  # a shutdown does not use up one of the audit's attempts
    assert checkpoint.is_file()
    broker = redis.Redis.from_url(service.settings.broker_url)
    assert broker.llen(service.settings.audit_queue) == 1  # the message went back too


def test_a_cancelled_audit_stops_and_the_worker_takes_the_next(make_service, hc18_cases):
    service = make_service()
    loaded = load_dataset(service.api, *hc18_cases)
    worker = service.worker()
    long_id = submit(service.api, loaded, **{**TINY, "epochs": 5000, "warmup_epochs": 1})["id"]

    def training() -> bool:
        audit = service.audit(long_id)
        return audit.phase == "train" and (audit.epoch or 0) >= 2

    wait_until(training, 90, "the long audit to be training", worker)
    response = service.api.post(f"/v1/audits/{long_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    cancelled_at = time.monotonic()
    worker.wait_for_log(f"audit {long_id}: stopped, it is cancelled", timeout=30)
    assert time.monotonic() - cancelled_at < 10  # noticed within a step or two
    next_id = submit(service.api, loaded, **TINY)["id"]
    service.wait_status(next_id, "succeeded", worker, timeout=90)

    cancelled = service.audit(long_id)
    assert cancelled.status == "cancelled" and cancelled.epoch < 5000
    assert f"audit {long_id}: stopped, it is cancelled" in worker.text()
    assert service.result_counts(long_id) == (0, 0)
    assert not run_folder(service.api.store, long_id).exists()
    assert service.result_counts(next_id) == (8, 8)


def test_a_queued_audit_survives_a_redis_restart(make_service, hc18_cases, tmp_path):
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    broker = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(broker, socket_connect_timeout=1)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: _pings(client), 20, "a throwaway Redis")
        service = make_service(broker_url=broker)
        audit_id = submit(service.api, load_dataset(service.api, *hc18_cases), **TINY)["id"]
        queue = service.settings.audit_queue
        assert client.llen(queue) == 1  # the message waits in Redis

        server.terminate()  # Redis restarts with nothing: the message is gone
        server.wait(10)
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(lambda: _pings(client), 20, "Redis to restart")
        assert client.llen(queue) == 0
        assert service.audit(audit_id).status == "queued"  # the database still knows

        worker = service.worker()
        audit = service.wait_status(audit_id, "succeeded", worker)
        assert audit.attempts == 1
        assert f"re-sent [{audit_id}]" in worker.text()  # the reconciler sent it again
        assert service.result_counts(audit_id) == (8, 8)
    finally:
        server.terminate()
        server.wait(10)


def test_bad_input_found_by_the_worker_fails_the_audit_naming_the_case(make_service, hc18_cases):
    service = make_service()
    loaded = load_dataset(service.api, *hc18_cases)
    images, _ = hc18_cases
    bad = images[5].stem
    with service.api.sessions() as session:  # the stored image rots after it was checked
        sha = session.scalar(
            select(StoredFile.sha256)
            .join(Case, Case.image_file_id == StoredFile.id)
            .where(Case.name == bad)
        )
    service.api.store.path(sha).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    worker = service.worker()
    audit_id = submit(service.api, loaded, **TINY)["id"]
    audit = service.wait_status(audit_id, "failed", worker)
    assert audit.error_code == "unreadable_file"
    assert f"case '{bad}'" in audit.error_message
    assert audit.attempts == 1  # bad input is not retried
    response = service.api.get(f"/v1/audits/{audit_id}")
    assert response.json()["error"]["code"] == "unreadable_file"
    assert bad in response.json()["error"]["message"]
    assert service.result_counts(audit_id) == (0, 0)
    assert not run_folder(service.api.store, audit_id).exists()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _watch(url: str, key: str, seen: list[dict], stop: threading.Event) -> None:
    """Poll the API's audits while ``submit`` runs, as a dashboard would."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=5) as client:
        while not stop.wait(0.1):
            try:
                seen.extend(client.get("/v1/audits").json()["items"])
            except (httpx.HTTPError, KeyError, ValueError):
                continue
