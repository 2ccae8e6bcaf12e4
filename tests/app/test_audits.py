"""Submitting, following and cancelling audits; the task that reaches the broker."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from app.queue import RUN_AUDIT
from app.services import lifecycle
from models.config import AuditConfig
from tests.app.conftest import load_dataset, submit


@pytest.fixture
def loaded(api, hc18):
    return load_dataset(api, *hc18)


def broker_messages(api) -> list[dict]:
    """The messages in the embedded broker (kombu's SQLAlchemy transport), decoded."""
    path = api.settings.broker_url.removeprefix("sqla+sqlite:///")
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if "kombu_message" not in tables:  # nothing was ever sent
            return []
        rows = db.execute(
            "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
        ).fetchall()
    return [{"queue": name, **json.loads(payload)} for name, payload in rows]


def test_submit_answers_202_and_sends_the_audit_id_by_task_name(api, loaded):
    audit = submit(api, loaded, epochs=5)
    assert audit["status"] == "queued" and audit["cases"] == 9
    expected = AuditConfig(epochs=5, classes={"class_1": 1}).to_dict()  # the set's classes
    assert audit["parameters"] == {**expected, "channels": [16, 32, 64, 128]}
    assert audit["progress"]["phase"] is None and audit["error"] is None
    [message] = broker_messages(api)
    assert message["queue"] == api.settings.audit_queue
    assert message["headers"]["task"] == RUN_AUDIT
    assert message["headers"]["id"] == audit["task_id"]
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [audit["id"]] and kwargs == {}


def test_parameters_are_validated(api, loaded):
    for parameters, words in (
        ({"learning_rte": 0.1}, "unknown audit parameters ['learning_rte']"),
        ({"size": 30}, "size must be >= 32"),
        ({"epochs": 3.5}, "epochs"),
        ({"confidence": 2}, "confidence must be in [0.5, 1]"),
    ):
        response = api.post(
            "/v1/audits",
            json={
                "dataset_id": loaded.dataset_id,
                "annotation_set_id": loaded.set_id,
                "parameters": parameters,
            },
        )
        assert response.status_code == 422, parameters
        assert response.json()["code"] == "invalid_parameters"
        assert words in response.json()["detail"]
    assert api.get("/v1/audits").json()["total"] == 0
    assert broker_messages(api) == []


def test_inputs_are_checked_before_queueing(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks[:5])
    response = api.post(
        "/v1/audits", json={"dataset_id": loaded.dataset_id, "annotation_set_id": loaded.set_id}
    )
    assert response.status_code == 422 and response.json()["code"] == "too_few_cases"
    small = api.post(
        "/v1/audits",
        json={
            "dataset_id": loaded.dataset_id,
            "annotation_set_id": loaded.set_id,
            "parameters": {"min_cases": 4},
        },
    )
    assert small.status_code == 202 and small.json()["cases"] == 5

    other = load_dataset(api, images, masks, name="other")
    wrong = api.post(
        "/v1/audits", json={"dataset_id": loaded.dataset_id, "annotation_set_id": other.set_id}
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "wrong_dataset"
    missing = api.post(
        "/v1/audits", json={"dataset_id": loaded.dataset_id, "annotation_set_id": 10_000}
    )
    assert missing.status_code == 404


def test_a_0_255_mask_is_refused_at_upload_before_any_audit(api, hc18, tmp_path):
    """Issue 14: once refused only when the audit was submitted (tests/app/test_classes.py)."""
    import numpy as np
    from PIL import Image

    images, masks = hc18
    wide = tmp_path / "wide"
    wide.mkdir()
    for mask in masks:
        array = np.asarray(Image.open(mask)).astype(np.uint8) * 255
        Image.fromarray(array).save(wide / mask.name)
    dataset_id = api.post("/v1/datasets", json={"name": "d"}).json()["id"]
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images).status_code == 201
    set_id = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "a"}).json()["id"]
    response = api.upload(
        f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks", sorted(wide.iterdir())
    )
    assert response.status_code == 422
    assert response.json()["code"] == "mask_out_of_range"
    assert response.json()["file"] == masks[0].name and "255" in response.json()["detail"]


def test_progress_and_cancel(api, loaded):
    audit = submit(api, loaded)
    with api.sessions() as session:
        assert lifecycle.claim_audit(session, audit["id"]) is not None
        assert lifecycle.report_progress(
            session, audit["id"], phase="train", epoch=3, epochs=40, percent=7.5, eta_seconds=99
        )
    shown = api.get(f"/v1/audits/{audit['id']}").json()
    assert shown["status"] == "running" and shown["attempts"] == 1
    progress = shown["progress"]
    assert (progress["phase"], progress["epoch"], progress["percent"]) == ("train", 3, 7.5)
    assert progress["eta_seconds"] == 99 and progress["heartbeat_at"]

    cancelled = api.post(f"/v1/audits/{audit['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"]
    again = api.post(f"/v1/audits/{audit['id']}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "audit_finished"
    with api.sessions() as session:  # the worker learns at its next report, and stops
        assert not lifecycle.report_progress(session, audit["id"], phase="train", epoch=4)


def test_list_audits_newest_first_and_by_status(api, loaded):
    first, second = submit(api, loaded), submit(api, loaded)
    api.post(f"/v1/audits/{first['id']}/cancel")
    listed = api.get("/v1/audits").json()
    assert [a["id"] for a in listed["items"]] == [second["id"], first["id"]]
    queued = api.get("/v1/audits", params={"status": "queued"}).json()
    assert [a["id"] for a in queued["items"]] == [second["id"]]
    other = api.get("/v1/audits", params={"dataset_id": loaded.dataset_id + 1}).json()
    assert other["total"] == 0


def test_an_unreachable_broker_fails_the_committed_audit(api_factory, hc18):
    api = api_factory(broker_url="redis://127.0.0.1:1/0")
    loaded = load_dataset(api, *hc18)
    response = api.post(
        "/v1/audits", json={"dataset_id": loaded.dataset_id, "annotation_set_id": loaded.set_id}
    )
    assert response.status_code == 503 and response.json()["code"] == "broker_unavailable"
    [audit] = api.get("/v1/audits").json()["items"]  # committed before the send was tried
    assert audit["status"] == "failed" and audit["error"]["code"] == "broker_unavailable"
