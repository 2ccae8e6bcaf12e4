"""A comparison of annotation sets run by a real ``segaudit worker`` from the ``cpu`` queue on
real PostgreSQL and Redis, while a worker that consumes only the ``gpu`` queue leaves it alone.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from app.db.enums import Role
from app.db.tables import Comparison
from app.queue import RUN_AUDIT, RUN_COMPARISON
from app.services import keys
from app.settings import Settings
from tests.app.conftest import load_dataset
from tests.worker.conftest import wait_until
from worker.celery_app import make_celery


def test_comparisons_are_routed_to_the_cpu_queue(tmp_path):
    settings = Settings(data_dir=tmp_path, audit_queue="big-gpu", cpu_queue="small-cpu")
    conf = make_celery(settings).conf
    assert conf.task_routes[RUN_COMPARISON] == {"queue": "small-cpu"}
    assert conf.task_routes[RUN_AUDIT] == {"queue": "big-gpu"}


def test_a_worker_on_the_cpu_queue_runs_a_comparison(make_service, hc18_cases, tmp_path):
    service = make_service()
    api = service.api
    with api.sessions() as session:
        project = keys.get_or_create_project(session, "alpha")
        _, secret = keys.create_key(session, project, Role.reviewer, "reviewer")
    api.headers["reviewer"] = {"X-API-Key": secret}
    images, masks = hc18_cases
    loaded = load_dataset(api, images, masks)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for path in masks:
        Image.fromarray(np.roll(np.asarray(Image.open(path)), 4, axis=0)).save(shifted / path.name)
    aset = api.post(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets", json={"name": "shifted"}
    ).json()
    upload = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{aset['id']}/masks"
    assert api.upload(upload, sorted(shifted.iterdir())).status_code == 201

    gpu_only = service.spawn(
        "gpu-worker", "worker", "--loglevel=info", "--queues", service.settings.audit_queue
    )
    gpu_only.wait_for_log(" ready.", timeout=90)
    created = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": [loaded.set_id, aset["id"]]}
    )
    assert created.status_code == 202, created.text
    comparison_id = created.json()["id"]
    time.sleep(2)  # the gpu worker never takes it
    assert api.get(f"/v1/comparisons/{comparison_id}").json()["status"] == "queued"

    cpu = service.spawn(
        "cpu-worker", "worker", "--loglevel=info", "--queues", service.settings.cpu_queue
    )

    def finished() -> Comparison | None:
        with api.sessions() as session:
            row = session.get(Comparison, comparison_id)
            assert row is not None
            return row if row.status in ("succeeded", "failed") else None

    done = wait_until(finished, 120, f"comparison {comparison_id} to finish", cpu)
    assert done.status == "succeeded", (done.error_code, done.error_message, cpu.tail())
    assert done.attempts == 1 and done.percent == 100.0 and done.cases_done == 8
    body = api.get(f"/v1/comparisons/{comparison_id}").json()
    assert body["task_id"] == created.json()["task_id"]
    rows = api.get(f"/v1/comparisons/{comparison_id}/cases").json()
    assert rows["total"] == 8
    # Shifted 4 rows of 1 mm: the 95th-percentile distance is 4 mm within 1% on each case.
    assert all(abs(r["p95_distance_mm"] - 4.0) < 0.04 for r in rows["items"]), rows["items"]
