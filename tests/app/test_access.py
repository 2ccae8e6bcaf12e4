"""Who may do what: 401 without a valid key, 403 for a weak role, 404 across projects."""

from __future__ import annotations

import pytest

from app.services import lifecycle
from tests.app.conftest import engine_outputs, load_dataset, submit


@pytest.fixture
def alpha(api, hc18, tmp_path):
    """Project alpha's dataset, annotation set, and a succeeded audit."""
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = submit(api, loaded)["id"]
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        out = engine_outputs(tmp_path / "out", masks, [0.1 * i for i in range(9)])
        assert lifecycle.complete_audit(session, api.store, audit_id, *out)
    return loaded, audit_id, masks[0].stem


def urls(loaded, audit_id, case):
    d, s, a = loaded.dataset_id, loaded.set_id, audit_id
    case_id = loaded.case_ids[case]
    reads = [
        f"/v1/datasets/{d}",
        f"/v1/datasets/{d}/cases",
        f"/v1/datasets/{d}/annotation-sets",
        f"/v1/datasets/{d}/annotation-sets/{s}",
        f"/v1/datasets/{d}/annotation-sets/{s}/masks",
        f"/v1/audits/{a}",
        f"/v1/audits/{a}/cases",
        f"/v1/audits/{a}/cases/{case}",
        f"/v1/audits/{a}/cases/{case}/cleansed-mask",
        f"/v1/audits/{a}/cases/{case}/issue-map",
        f"/v1/audits/{a}/export",
        f"/v1/cases/{case_id}/history",
    ]
    writes = [
        (f"/v1/datasets/{d}/annotation-sets", {"json": {"name": "b"}}),
        (f"/v1/datasets/{d}/images", {"files": [("files", ("x.png", b"x"))]}),
        (f"/v1/datasets/{d}/annotation-sets/{s}/masks", {"files": [("files", ("x.png", b"x"))]}),
        ("/v1/audits", {"json": {"dataset_id": d, "annotation_set_id": s}}),
        (f"/v1/audits/{a}/cancel", {}),
        (f"/v1/audits/{a}/cases/{case}/review", {"json": {"decision": "keep_original"}}),
    ]
    return reads, writes


def test_another_project_sees_nothing(api, alpha):
    reads, writes = urls(*alpha)
    for url in reads:
        assert api.get(url, role="viewer").status_code == 200, url
        response = api.get(url, role="other")
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"
    for url, body in writes:
        response = api.post(url, role="other", **body)
        assert response.status_code == 404, url
    assert api.get("/v1/datasets", role="other").json()["total"] == 0
    assert api.get("/v1/audits", role="other").json()["total"] == 0
    # beta's admin cannot read or revoke alpha's keys either
    assert api.get("/v1/keys", role="other").json()[0]["name"] == "beta-admin"
    alpha_key = api.get("/v1/keys", role="admin").json()[0]["id"]
    assert api.post(f"/v1/keys/{alpha_key}/revoke", role="other").status_code == 404


def test_no_key_or_a_wrong_key_is_401(api, alpha):
    reads, writes = urls(*alpha)
    calls = [(api.client.get, url, {}) for url in reads]
    calls += [(api.client.post, url, body) for url, body in writes]
    for call, url, body in calls:
        missing = call(url, **body)
        assert missing.status_code == 401 and missing.json()["code"] == "missing_key", url
        wrong = call(url, headers={"X-API-Key": "sa_not-a-key"}, **body)
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_key", url


def test_roles(api, alpha):
    loaded, audit_id, case = alpha
    d = loaded.dataset_id
    viewer_writes = [
        ("/v1/datasets", {"json": {"name": "x"}}),
        (f"/v1/datasets/{d}/annotation-sets", {"json": {"name": "x"}}),
        (f"/v1/datasets/{d}/images", {"files": [("files", ("x.png", b"x"))]}),
        (f"/v1/audits/{audit_id}/cancel", {}),
    ]
    for url, body in viewer_writes:
        response = api.post(url, role="viewer", **body)
        assert response.status_code == 403 and response.json()["code"] == "forbidden", url
    for role in ("viewer", "annotator", "reviewer"):
        assert api.get("/v1/keys", role=role).status_code == 403
        assert api.post("/v1/keys", role=role, json={"role": "viewer"}).status_code == 403
    review = f"/v1/audits/{audit_id}/cases/{case}/review"
    assert api.post(review, role="annotator", json={"decision": "keep_original"}).status_code == 403
    assert api.post(review, role="reviewer", json={"decision": "keep_original"}).status_code == 201
    made = api.post("/v1/datasets", role="annotator", json={"name": "by-annotator"})
    assert made.status_code == 201
    assert api.post("/v1/datasets", role="admin", json={"name": "by-admin"}).status_code == 201


def test_admin_manages_keys(api):
    made = api.post("/v1/keys", role="admin", json={"role": "viewer", "name": "dashboard"})
    assert made.status_code == 201
    key = made.json()
    assert key["key"].startswith(key["prefix"]) and key["role"] == "viewer"
    headers = {"X-API-Key": key["key"]}
    assert api.client.get("/v1/datasets", headers=headers).status_code == 200
    listed = api.get("/v1/keys", role="admin").json()
    assert "key" not in listed[0] and key["id"] in [k["id"] for k in listed]
    revoked = api.post(f"/v1/keys/{key['id']}/revoke", role="admin")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = api.client.get("/v1/datasets", headers=headers)
    assert after.status_code == 401 and after.json()["code"] == "invalid_key"


def test_the_key_and_its_role_are_checked_before_the_lookup(api):
    """No key is a 401 and a weak role a 403 whether or not the resource exists; only then a 404."""
    gone = 999999
    files = {"files": [("files", ("x.png", b"x"))]}
    writes = [
        (f"/v1/datasets/{gone}/annotation-sets", {"json": {"name": "b"}}, "viewer"),
        (f"/v1/datasets/{gone}/images", files, "viewer"),
        (f"/v1/datasets/{gone}/annotation-sets/{gone}/masks", files, "viewer"),
        (f"/v1/datasets/{gone}/dicomweb/pull", {"json": {}}, "viewer"),
        (f"/v1/audits/{gone}/cancel", {}, "viewer"),
        (f"/v1/audits/{gone}/cases/x/review", {"json": {"decision": "keep_original"}}, "annotator"),
        (f"/v1/audits/{gone}/dicomweb/push", {"json": {}}, "annotator"),
    ]
    for url, body, weak in writes:
        refused = api.post(url, role=weak, **body)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", url
        missing = api.client.post(url, **body)
        assert missing.status_code == 401 and missing.json()["code"] == "missing_key", url
    reads = [
        f"/v1/datasets/{gone}",
        f"/v1/datasets/{gone}/annotation-sets/{gone}/masks",
        f"/v1/audits/{gone}/cases/x",
    ]
    for url in reads:
        missing = api.client.get(url)
        assert missing.status_code == 401 and missing.json()["code"] == "missing_key", url
        unknown = api.get(url, role="viewer")
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found", url
    assert api.get(f"/v1/datasets/{gone}", role="viewer").json()["detail"] == (
        f"no dataset {gone} in this project"
    )
    pacs = {"url": "https://pacs.example.org/dicom-web"}
    pull = api.post(f"/v1/datasets/{gone}/dicomweb/pull", json={**pacs, "study_uid": "1.2"})
    assert pull.status_code == 404 and pull.json()["detail"] == f"no dataset {gone} in this project"
    push = api.post(f"/v1/audits/{gone}/dicomweb/push", role="reviewer", json=pacs)
    assert push.status_code == 404 and push.json()["detail"] == f"no audit {gone} in this project"
