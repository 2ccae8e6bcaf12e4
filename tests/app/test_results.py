"""Reading an audit's results: pages, sorting, filters, one case, files, export, history,
reviews.
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from app.services import lifecycle
from bench.evaluate import read_scores
from imaging import layout
from tests.app.conftest import engine_outputs, load_dataset, submit

SCORES = [0.05, 0.9, 0.3, 0.75, 0.1, 0.6, 0.2, 0.95, 0.4]


def finish(api, loaded, masks, out, scores):
    audit_id = submit(api, loaded)["id"]
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        assert lifecycle.complete_audit(
            session, api.store, audit_id, *engine_outputs(out, masks, scores)
        )
    return audit_id


@pytest.fixture
def done(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = finish(api, loaded, masks, tmp_path / "out", SCORES)
    return loaded, audit_id, masks, tmp_path / "out"


def test_the_audit_shows_its_summary(api, done):
    _, audit_id, _, _ = done
    audit = api.get(f"/v1/audits/{audit_id}").json()
    assert audit["status"] == "succeeded" and audit["progress"]["percent"] == 100.0
    assert audit["summary"]["cases"] == 9 and audit["summary"]["flagged"] == 4
    assert audit["summary"]["max_noise_score"] == pytest.approx(0.95)


def test_pages_sorted_by_noise_score(api, done):
    _, audit_id, masks, _ = done
    by_score = sorted(zip(SCORES, (m.stem for m in masks), strict=True), reverse=True)
    seen = []
    for offset in (0, 4, 8):
        page = api.get(f"/v1/audits/{audit_id}/cases", params={"limit": 4, "offset": offset}).json()
        assert page["total"] == 9
        seen += [r["case"] for r in page["items"]]
    assert seen == [name for _, name in by_score]
    first = api.get(f"/v1/audits/{audit_id}/cases", params={"limit": 1}).json()["items"][0]
    assert first["rank"] == 1 and first["clean_prob"] == pytest.approx(0.05)
    ascending = api.get(f"/v1/audits/{audit_id}/cases", params={"sort": "noise_score"}).json()
    assert [r["noise_score"] for r in ascending["items"]] == sorted(SCORES)
    by_name = api.get(f"/v1/audits/{audit_id}/cases", params={"sort": "case"}).json()
    assert [r["case"] for r in by_name["items"]] == sorted(m.stem for m in masks)
    bad = api.get(f"/v1/audits/{audit_id}/cases", params={"sort": "colour"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_filters(api, done):
    _, audit_id, _, _ = done
    flagged = api.get(f"/v1/audits/{audit_id}/cases", params={"flagged": True}).json()
    assert sorted(r["noise_score"] for r in flagged["items"]) == [0.6, 0.75, 0.9, 0.95]
    clean = api.get(f"/v1/audits/{audit_id}/cases", params={"flagged": False}).json()
    assert clean["total"] == 5 and not any(r["flagged"] for r in clean["items"])
    ranged = api.get(
        f"/v1/audits/{audit_id}/cases", params={"min_score": 0.2, "max_score": 0.6}
    ).json()
    assert [r["noise_score"] for r in ranged["items"]] == [0.6, 0.4, 0.3, 0.2]


def test_one_case_and_its_files(api, done):
    _, audit_id, masks, out = done
    case = masks[1].stem  # noise_score 0.9
    detail = api.get(f"/v1/audits/{audit_id}/cases/{case}").json()
    assert detail["noise_score"] == 0.9 and detail["flagged"] and detail["rank"] == 2
    assert detail["dice"] == [pytest.approx(0.55)] and detail["reviews"] == []
    assert set(detail["files"]) == {"cleansed-mask", "issue-map", "pseudo-label"}
    for link, folder in (
        ("cleansed-mask", layout.CLEANSED),
        ("issue-map", layout.ISSUE_MAPS),
        ("pseudo-label", layout.PSEUDO),
    ):
        response = api.get(detail["files"][link])
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == (out / folder / masks[1].name).read_bytes()
        assert masks[1].name in response.headers["content-disposition"]
    assert api.get(f"/v1/audits/{audit_id}/cases/nobody").status_code == 404
    assert api.get(f"/v1/audits/{audit_id}/cases/nobody/issue-map").status_code == 404


def test_export_holds_every_cleansed_mask_and_the_scores(api, done):
    _, audit_id, masks, out = done
    response = api.get(f"/v1/audits/{audit_id}/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = set(zf.namelist())
        per_case = {
            f"{d}/{m.name}" for m in masks for d in ("cleansed", "pseudo_labels", "issue_maps")
        }
        assert names == {"scores.csv", "run.json", "summary.json"} | per_case  # 2D: no slices.csv
        assert (
            zf.read(f"cleansed/{masks[0].name}") == (out / "cleansed" / masks[0].name).read_bytes()
        )
        exported = list(csv.DictReader(io.StringIO(zf.read("scores.csv").decode())))
    assert exported == read_scores(out / layout.SCORES)  # as the engine wrote it
    assert not list(api.store.tmp.iterdir())  # the zip was removed after sending


def test_export_waits_for_success(api, hc18):
    loaded = load_dataset(api, *hc18)
    audit_id = submit(api, loaded)["id"]
    response = api.get(f"/v1/audits/{audit_id}/export")
    assert response.status_code == 409 and response.json()["code"] == "audit_not_finished"


def test_history_across_audits(api, done, tmp_path):
    loaded, first, masks, _ = done
    second = finish(api, loaded, masks, tmp_path / "again", [1 - s for s in SCORES])
    case_id = loaded.case_ids[masks[0].stem]
    history = api.get(f"/v1/cases/{case_id}/history").json()
    assert [h["audit_id"] for h in history] == [first, second]
    assert [h["result"]["noise_score"] for h in history] == [0.05, pytest.approx(0.95)]
    assert api.get("/v1/cases/999999/history").status_code == 404


def test_reviews_are_kept_never_overwritten(api, done):
    _, audit_id, masks, _ = done
    url = f"/v1/audits/{audit_id}/cases/{masks[1].stem}/review"
    first = api.post(url, role="reviewer", json={"decision": "accept_cleansed", "comment": "ok"})
    assert first.status_code == 201 and first.json()["reviewer"] == "alpha-reviewer"
    second = api.post(url, role="admin", json={"decision": "needs_rework", "comment": "no"})
    assert second.status_code == 201
    reviews = api.get(f"/v1/audits/{audit_id}/cases/{masks[1].stem}").json()["reviews"]
    assert [(r["decision"], r["comment"]) for r in reviews] == [
        ("accept_cleansed", "ok"),
        ("needs_rework", "no"),
    ]
    assert reviews[0]["created_at"] <= reviews[1]["created_at"]
    weak = api.post(url, role="annotator", json={"decision": "keep_original"})
    assert weak.status_code == 403 and weak.json()["code"] == "forbidden"
    bad = api.post(url, role="reviewer", json={"decision": "maybe"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_volumes_round_trip_with_their_slices(api, tmp_path):
    from imaging.formats import read_mask
    from tests.conftest import mr_nifti_cases

    images, masks = mr_nifti_cases(tmp_path / "slabs", fmt="nrrd")
    masks = sorted(masks.iterdir())
    loaded = load_dataset(api, sorted(images.iterdir()), masks, name="mr")
    audit_id = finish(api, loaded, masks, tmp_path / "out", SCORES)
    detail = api.get(f"/v1/audits/{audit_id}/cases/{masks[0].stem}").json()
    assert [s["slice"] for s in detail["slices"]] == [0, 1, 2, 3, 4]
    assert detail["slices"][2] == {
        "slice": 2,
        "dice_gap": pytest.approx(0.2),
        "given_pixels": 100,
        "predicted_pixels": 92,
        "issue_pixels": 2,
    }
    response = api.get(detail["files"]["cleansed-mask"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    downloaded = tmp_path / "download.nrrd"
    downloaded.write_bytes(response.content)
    got = read_mask(downloaded, case="x")
    want = read_mask(tmp_path / "out" / layout.CLEANSED / masks[0].name, case="x")
    assert (got.array == want.array).all()
    assert (got.geometry.affine == read_mask(masks[0], case="x").geometry.affine).all()
