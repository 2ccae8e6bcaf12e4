"""Declared classes end to end on real PostgreSQL: the set's classes reach the worker's engine
through the audit's parameters, and its names come back in the API's results and the export.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from tests.worker.conftest import TINY
from worker.pipeline import Outcome, run_audit_job

pytestmark = pytest.mark.usefixtures("one_thread")  # torch in this process: one thread


def test_a_declared_set_is_audited_under_its_class_names(make_service, hc18_cases):
    service = make_service()
    api = service.api
    images, masks = hc18_cases
    dataset_id = api.post("/v1/datasets", json={"name": "d"}).json()["id"]
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images).status_code == 201
    created = api.post(
        f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "a", "classes": {"head": 1}}
    )
    set_id = created.json()["id"]
    url = f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks"
    assert api.upload(url, masks).status_code == 201
    body = {"dataset_id": dataset_id, "annotation_set_id": set_id, "parameters": TINY}
    audit_id = api.post("/v1/audits", json=body).json()["id"]

    job = {"sessions": api.sessions, "store": api.store, "settings": service.settings}
    assert run_audit_job(audit_id, **job, task_id="t-1") is Outcome.succeeded
    audit = api.get(f"/v1/audits/{audit_id}").json()
    assert audit["parameters"]["classes"] == {"head": 1}
    assert audit["summary"]["classes"] == {"head": 1}
    items = api.get(f"/v1/audits/{audit_id}/cases").json()["items"]
    assert len(items) == 8 and all(list(i["dice_by_class"]) == ["head"] for i in items)
    export = api.get(f"/v1/audits/{audit_id}/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        header = next(csv.reader(io.StringIO(zf.read("scores.csv").decode())))
        run = json.loads(zf.read("run.json"))
    assert "dice_head" in header and "dice_class_1" not in header
    assert run["inputs"]["classes"] == {"head": 1}
