"""Resolving and exporting, the refusals: corrected masks off the case's grid or its classes, a
resolve of an unfinished audit, another project's key, a weak role; each a 4xx with a reason and
nothing written. And NIfTI volumes resolved and exported with their affines.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from tests.app.conftest import load_dataset, submit
from tests.app.review_data import (
    SCORES,
    assert_unchanged,
    correct,
    decide,
    finish,
    png_bytes,
    read_png,
    snapshot,
    unzip,
)
from tests.conftest import mr_nifti_cases


@pytest.fixture
def audited(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = finish(api, loaded, masks, tmp_path / "out", SCORES)
    return loaded, audit_id, masks


def _box(shape, value=1, dtype=np.uint8):
    out = np.zeros(shape, dtype)
    out[50:150, 100:300] = value
    return out


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("small.png", png_bytes(_box((540, 400))), "shape_mismatch"),  # another grid
        ("two.png", png_bytes(_box((540, 800), value=2)), "mask_out_of_range"),  # 2 classes
        ("byte.png", png_bytes(_box((540, 800), value=255)), "mask_out_of_range"),
        ("fix.tif", b"", "unsupported_format"),  # the audited masks are PNG
        ("broken.png", b"not a png", "unreadable_file"),
    ],
)
def test_a_bad_correction_is_refused_and_nothing_kept(api, audited, name, data, code):
    _, audit_id, masks = audited
    if name.endswith(".tif"):
        import io

        buffer = io.BytesIO()
        tifffile.imwrite(buffer, _box((540, 800)))
        data = buffer.getvalue()
    before = snapshot(api)
    refused = correct(api, audit_id, masks[0].stem, name, data)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == code and body["detail"]
    assert body["file"] == name
    assert_unchanged(api, before)


def test_one_correction_is_one_file(api, audited):
    _, audit_id, masks = audited
    before = snapshot(api)
    files = [("files", (m.name, m.read_bytes(), "application/octet-stream")) for m in masks[:2]]
    url = f"/v1/audits/{audit_id}/cases/{masks[0].stem}/corrections"
    refused = api.client.post(url, headers=api.headers["reviewer"], files=files)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"
    assert "one mask file" in refused.json()["detail"]
    missing = correct(api, audit_id, "nobody", "nobody.png", masks[0].read_bytes())
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert_unchanged(api, before)


def test_an_unfinished_audit_is_not_resolved(api, audited):
    loaded, _, masks = audited
    queued = submit(api, loaded)["id"]
    before = snapshot(api)
    resolve = api.post(f"/v1/audits/{queued}/resolve", role="reviewer", json={"policy": "exclude"})
    assert resolve.status_code == 409 and resolve.json()["code"] == "audit_not_finished"
    assert "queued" in resolve.json()["detail"]
    fix = correct(api, queued, masks[0].stem, masks[0].name, masks[0].read_bytes())
    assert fix.status_code == 409 and fix.json()["code"] == "audit_not_finished"
    cleansed = api.get(f"/v1/audits/{queued}/labels/cleansed")
    assert cleansed.status_code == 409 and cleansed.json()["code"] == "audit_not_finished"
    assert_unchanged(api, before)


def test_resolve_refusals(api, audited):
    loaded, audit_id, masks = audited
    url = f"/v1/audits/{audit_id}/resolve"
    before = snapshot(api)
    nothing = api.post(url, role="reviewer", json={"policy": "exclude"})  # nothing decided
    assert nothing.status_code == 422 and nothing.json()["code"] == "nothing_resolved"
    unnamed = api.post(url, role="reviewer", json={})
    assert unnamed.status_code == 422 and unnamed.json()["code"] == "invalid_request"
    assert "policy" in unnamed.json()["detail"]
    bad = api.post(url, role="reviewer", json={"policy": "majority"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    taken = api.post(url, role="reviewer", json={"policy": "keep_original", "name": "team-a"})
    assert taken.status_code == 409 and taken.json()["code"] == "annotation_set_exists"
    assert_unchanged(api, before)


def test_roles_and_projects(api, audited):
    loaded, audit_id, masks = audited
    decide(api, audit_id, masks[0].stem, "needs_rework")
    case = masks[0].stem
    data = masks[0].read_bytes()
    before = snapshot(api)
    resolve = f"/v1/audits/{audit_id}/resolve"
    body = {"policy": "keep_original"}
    for role, status in (("other", 404), ("viewer", 403), ("annotator", 403)):
        refused = api.post(resolve, role=role, json=body)
        assert refused.status_code == status, (role, refused.text)
        assert refused.json()["code"] == ("not_found" if status == 404 else "forbidden")
    for role, status in (("other", 404), ("viewer", 403)):
        refused = correct(api, audit_id, case, masks[0].name, data, role)
        assert refused.status_code == status, (role, refused.text)
    export = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}/export"
    for url in (export, f"/v1/audits/{audit_id}/labels/cleansed", f"/v1/audits/{audit_id}/rework"):
        assert api.get(url, role="other").status_code == 404, url
        assert api.client.get(url).status_code == 401, url
    assert_unchanged(api, before)
    # The same requests with the right keys do what they say.
    assert [r["case"] for r in api.get(f"/v1/audits/{audit_id}/rework").json()] == [case]
    assert correct(api, audit_id, case, masks[0].name, data, "annotator").status_code == 201
    assert api.post(resolve, role="reviewer", json=body).status_code == 201


def test_nifti_volumes_resolved_with_their_affines(api, tmp_path):
    images, masks = mr_nifti_cases(tmp_path / "slabs")
    masks = sorted(masks.iterdir())
    loaded = load_dataset(api, sorted(images.iterdir()), masks, name="mr")
    audit_id = finish(api, loaded, masks, tmp_path / "out", SCORES)
    names = [m.name.removesuffix(".nii.gz") for m in masks]
    given = {n: nib.load(m) for n, m in zip(names, masks, strict=True)}
    # One slab with a label takes the cleansed mask (which then differs), another a correction.
    a = next(i for i, n in enumerate(names) if np.asanyarray(given[n].dataobj).any())
    b = (a + 1) % len(names)
    cleansed = nib.load(tmp_path / "out" / "cleansed" / masks[a].name)
    assert not np.array_equal(
        np.asanyarray(cleansed.dataobj), np.asanyarray(given[names[a]].dataobj)
    )
    decide(api, audit_id, names[a], "accept_cleansed")

    corrected = np.zeros(given[names[b]].shape, np.uint8)
    corrected[10:40, 20:60, 1:4] = 1
    before = snapshot(api)
    shifted = given[names[b]].affine.copy()
    shifted[:3, 3] += 5.0  # the same shape, elsewhere in space
    path = tmp_path / f"{names[b]}-off.nii.gz"
    nib.save(nib.Nifti1Image(corrected, shifted), path)
    refused = correct(api, audit_id, names[b], path.name, path.read_bytes())
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "geometry_mismatch" and refused.json()["file"] == path.name
    assert_unchanged(api, before)
    path = tmp_path / f"{names[b]}.nii.gz"
    nib.save(nib.Nifti1Image(corrected, given[names[b]].affine), path)
    assert correct(api, audit_id, names[b], path.name, path.read_bytes()).status_code == 201

    body = {"policy": "keep_original"}
    made = api.post(f"/v1/audits/{audit_id}/resolve", role="reviewer", json=body)
    assert made.status_code == 201, made.text
    url = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{made.json()['id']}/export"
    members, manifest = unzip(api.get(url))
    assert {r["case"]: r["source"] for r in manifest} == {
        n: {a: "cleansed", b: "corrected"}.get(i, "original") for i, n in enumerate(names)
    }
    want = {names[a]: cleansed, names[b]: nib.Nifti1Image(corrected, given[names[b]].affine)}
    out = tmp_path / "exported"
    out.mkdir()
    for row in manifest:
        assert row["file"] == f"labels/final/{row['case']}.nii.gz"
        path = out / f"{row['case']}.nii.gz"
        path.write_bytes(members[row["file"]])
        got = nib.load(path)
        expected = want.get(row["case"], given[row["case"]])
        assert np.array_equal(np.asanyarray(got.dataobj), np.asanyarray(expected.dataobj))
        assert np.allclose(got.affine, given[row["case"]].affine), row["case"]


def test_png_exports_hold_the_stored_bytes(api, audited):
    loaded, audit_id, masks = audited
    decide(api, audit_id, masks[2].stem, "accept_cleansed")
    made = api.post(
        f"/v1/audits/{audit_id}/resolve", role="reviewer", json={"policy": "keep_original"}
    )
    members, _ = unzip(
        api.get(f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{made.json()['id']}/export")
    )
    for mask in masks[:2]:
        assert members[f"labels/final/{mask.name}"] == mask.read_bytes()
    assert read_png(members[f"labels/final/{masks[2].name}"]).max() == 1
