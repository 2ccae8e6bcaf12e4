"""DELETE of datasets, annotation sets and audits: who may, what goes, and storage reclaimed."""

from __future__ import annotations

from app.runs import run_folder
from app.services import lifecycle
from imaging import layout
from tests.app.conftest import engine_outputs, load_dataset, submit


def delete(api, url, role):
    return api.client.delete(url, headers=api.headers[role])


def blobs(api):
    root = api.store.blobs
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def finished_audit(api, loaded, masks, out):
    audit_id = submit(api, loaded)["id"]
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        outputs = engine_outputs(out, masks, [0.1 * i for i in range(len(masks))])
        assert lifecycle.complete_audit(session, api.store, audit_id, *outputs)
    kept = run_folder(api.store, audit_id) / "out"  # what a worker keeps after a success
    kept.mkdir(parents=True)
    (kept / layout.MODEL).write_bytes(b"weights")
    (kept / layout.RUN).write_text("{}")
    return audit_id


def test_deleting_an_audit_removes_its_results_and_their_files(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    inputs = blobs(api)
    audit_id = finished_audit(api, loaded, masks, tmp_path / "out")
    assert len(blobs(api)) > len(inputs)

    running = submit(api, loaded)["id"]
    refused = delete(api, f"/v1/audits/{running}", "admin")
    assert refused.status_code == 409 and refused.json()["code"] == "audit_not_finished"
    assert delete(api, f"/v1/audits/{audit_id}", "reviewer").status_code == 403
    assert delete(api, f"/v1/audits/{audit_id}", "other").status_code == 404

    done = delete(api, f"/v1/audits/{audit_id}", "admin")
    assert done.status_code == 200, done.text
    assert done.json()["deleted"] == "audit" and done.json()["blobs_removed"] > 0
    assert api.get(f"/v1/audits/{audit_id}").status_code == 404
    assert blobs(api) == inputs  # the images and masks stay, the audit's masks are gone
    assert not run_folder(api.store, audit_id).exists()  # its trained network too
    assert run_folder(api.store, running).parent.is_dir()  # the folder of runs stays
    assert api.get(f"/v1/datasets/{loaded.dataset_id}").json()["cases"] == len(images)


def test_an_audited_dataset_needs_an_admin_and_goes_with_everything(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = finished_audit(api, loaded, masks, tmp_path / "out")
    url = f"/v1/datasets/{loaded.dataset_id}"
    refused = delete(api, url, "annotator")
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert api.get(url).status_code == 200

    done = delete(api, url, "admin")
    assert done.status_code == 200, done.text
    assert api.get(url).status_code == 404
    assert blobs(api) == [] and not run_folder(api.store, audit_id).exists()
    assert api.get("/v1/datasets").json()["total"] == 0
    # The name is free again.
    assert api.post("/v1/datasets", json={"name": "hc18"}).status_code == 201


def test_content_another_dataset_uses_is_kept(api, hc18):
    images, masks = hc18
    first = load_dataset(api, images, masks, name="first")
    stored = blobs(api)
    second = load_dataset(api, images, masks, name="second")
    assert blobs(api) == stored  # the same content, stored once

    done = delete(api, f"/v1/datasets/{first.dataset_id}", "annotator")
    assert done.status_code == 200 and done.json()["blobs_removed"] == 0
    assert blobs(api) == stored
    masks_url = f"/v1/datasets/{second.dataset_id}/annotation-sets/{second.set_id}/masks"
    assert api.get(masks_url).json()["total"] == len(masks)

    gone = delete(
        api, f"/v1/datasets/{second.dataset_id}/annotation-sets/{second.set_id}", "annotator"
    )
    assert gone.status_code == 200 and gone.json()["blobs_removed"] == len(masks)
    assert len(blobs(api)) == len(images)
    assert api.get(f"/v1/datasets/{second.dataset_id}").json()["cases"] == len(images)


def test_an_audited_annotation_set_needs_an_admin(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = finished_audit(api, loaded, masks, tmp_path / "out")
    url = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}"
    assert delete(api, url, "annotator").status_code == 403
    assert delete(api, url, "admin").status_code == 200
    assert api.get(url).status_code == 404
    assert api.get(f"/v1/audits/{audit_id}").status_code == 404
    assert len(blobs(api)) == len(images) and not run_folder(api.store, audit_id).exists()


def test_the_review_loop_s_records_refuse_or_go_with_what_they_belong_to(api, hc18, tmp_path):
    """A set resolved from an audit keeps the audit (409, nothing removed); deleting the resolved
    set first frees it; corrections go with their audit; a dataset goes with its comparisons."""
    from tests.app.review_data import SCORES, correct, decide, finish, png_bytes, read_png

    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = finish(api, loaded, masks, tmp_path / "out", SCORES)
    names = [m.stem for m in masks]
    decide(api, audit_id, names[1], "accept_cleansed")
    fix = read_png(masks[2]).copy()
    fix[:50] = 1
    assert correct(api, audit_id, names[2], "fix.png", png_bytes(fix)).status_code == 201
    made = api.post(
        f"/v1/audits/{audit_id}/resolve", role="reviewer", json={"policy": "keep_original"}
    )
    assert made.status_code == 201, made.text
    resolved = made.json()["id"]
    before = blobs(api)

    refused = delete(api, f"/v1/audits/{audit_id}", "admin")
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "still_referenced"
    assert api.get(f"/v1/audits/{audit_id}").status_code == 200 and blobs(api) == before

    sets = f"/v1/datasets/{loaded.dataset_id}/annotation-sets"
    assert delete(api, f"{sets}/{resolved}", "admin").status_code == 200
    gone = delete(api, f"/v1/audits/{audit_id}", "admin")
    assert gone.status_code == 200, gone.text
    assert len(blobs(api)) < len(before)  # the correction's and the audit's masks

    second = api.post(sets, json={"name": "rater-b"})
    assert second.status_code == 201, second.text
    second_id = second.json()["id"]
    assert api.upload(f"{sets}/{second_id}/masks", masks[:3]).status_code == 201
    compared = api.post(
        "/v1/comparisons",
        role="reviewer",
        json={"annotation_set_ids": [loaded.set_id, second_id]},
    )
    assert compared.status_code == 202, compared.text
    refused = delete(api, f"{sets}/{second_id}", "admin")
    assert refused.status_code == 409 and refused.json()["code"] == "still_referenced"
    done = delete(api, f"/v1/datasets/{loaded.dataset_id}", "admin")
    assert done.status_code == 200, done.text
    assert blobs(api) == []


def test_a_wrong_mask_is_deleted_and_replaced_until_the_set_is_audited(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    url = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}"
    case = masks[0].name.removesuffix(".png")
    before = {m["case"]: m for m in api.get(f"{url}/masks?limit=500").json()["items"]}
    blobs_before = blobs(api)

    again = api.upload(f"{url}/masks", [masks[0]])  # a second mask for the case: refused
    assert again.status_code == 409 and f"DELETE .../masks/{case}" in again.json()["detail"]
    assert delete(api, f"{url}/masks/{case}", "viewer").status_code == 403
    missing = delete(api, f"{url}/masks/no-such-case", "annotator")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    done = delete(api, f"{url}/masks/{case}", "annotator")
    assert done.status_code == 200, done.text
    assert done.json() == {"deleted": "mask", "id": before[case]["id"], "blobs_removed": 1}
    assert before[case]["file"]["sha256"] not in blobs(api)
    assert len(blobs(api)) == len(blobs_before) - 1
    assert api.get(url).json()["masks"] == len(masks) - 1

    # The corrected mask (here: another case's drawing, under this case's name) goes in.
    corrected = tmp_path / masks[0].name
    corrected.write_bytes(masks[1].read_bytes())
    replaced = api.upload(f"{url}/masks", [corrected])
    assert replaced.status_code == 201, replaced.text
    after = {m["case"]: m for m in api.get(f"{url}/masks?limit=500").json()["items"]}
    assert after[case]["file"]["sha256"] == before[masks[1].stem]["file"]["sha256"]
    assert after[case]["id"] != before[case]["id"] and len(after) == len(masks)

    # Once audited, the set's masks stay: the audit refers to them.
    finished_audit(api, loaded, masks, tmp_path / "out")
    refused = delete(api, f"{url}/masks/{case}", "admin")
    assert refused.status_code == 409 and refused.json()["code"] == "still_referenced"
    assert "corrections" in refused.json()["detail"]
    assert api.get(url).json()["masks"] == len(masks)
