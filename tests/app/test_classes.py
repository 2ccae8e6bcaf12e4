"""Classes on annotation sets (issue 14): declared or inferred, a mask with another value refused
at upload with nothing written, and the names in the audit's results, scores.csv and summary.
Runs on SQLite and PostgreSQL (the ``api`` fixture's backends).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.services import lifecycle
from tests.app.conftest import Api, engine_outputs, stored_files
from tests.app.dicom_data import (
    assert_unchanged,
    export_zip,
    masks_url,
    new_dataset,
    post_files,
    snapshot,
)
from tests.imaging.dicom.builders import TISSUE, TUMOUR, seg_for


def new_set(api: Api, dataset_id: int, **body: object) -> dict:
    response = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "a", **body})
    assert response.status_code == 201, response.text
    return response.json()


def with_images(api: Api, images: list[Path]) -> int:
    dataset_id = api.post("/v1/datasets", json={"name": "d"}).json()["id"]
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images).status_code == 201
    return int(dataset_id)


def relabelled(mask: Path, folder: Path, **values: int) -> Path:
    """A copy of an hc18 mask (0/1) with its foreground set to ``values['fg']`` and, where
    given, a 10x10 patch of ``values['patch']``.
    """
    array = np.asarray(Image.open(mask)).astype(np.uint8)
    array = np.where(array > 0, values.get("fg", 1), 0).astype(np.uint8)
    if "patch" in values:
        array[:10, :10] = values["patch"]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / mask.name)
    return folder / mask.name


def test_declared_classes_are_stored_and_returned(api, hc18):
    images, masks = hc18
    dataset_id = with_images(api, images)
    created = new_set(api, dataset_id, classes={"brain": 2, "head": 1})
    assert created["classes"] == {"head": 1, "brain": 2} and created["classes_declared"] is True
    assert list(created["classes"]) == ["head", "brain"]  # ordered by value
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{created['id']}"
    assert api.upload(f"{base}/masks", masks).status_code == 201
    again = api.get(base).json()
    assert again["classes"] == {"head": 1, "brain": 2} and again["classes_declared"] is True
    listed = api.get(f"/v1/datasets/{dataset_id}/annotation-sets").json()["items"]
    assert listed[0]["classes"] == {"head": 1, "brain": 2}


@pytest.mark.parametrize(
    ("classes", "code", "words"),
    [
        ({"head": 1, "skull": 1}, "invalid_classes", "share the value 1"),
        ({}, "invalid_classes", "at least one class"),
        ({"head": 0}, "invalid_request", "greater than or equal to 1"),
        ({"head": 70000}, "invalid_request", "less than or equal to 65535"),
        ({"fetal head": 1}, "invalid_request", "pattern"),
    ],
)
def test_a_bad_declaration_is_refused_and_creates_nothing(api, classes, code, words):
    dataset_id = new_dataset(api)
    response = api.post(
        f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "a", "classes": classes}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and words in response.text
    assert api.get(f"/v1/datasets/{dataset_id}/annotation-sets").json()["total"] == 0


def test_a_mask_with_an_undeclared_value_is_refused_at_upload_with_nothing_written(
    api, hc18, tmp_path
):
    images, masks = hc18
    dataset_id = with_images(api, images)
    aset = new_set(api, dataset_id, classes={"head": 1})
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    stray = relabelled(masks[3], tmp_path / "stray", patch=2)
    blobs = len(stored_files(api.store))
    before = snapshot(api)
    response = api.upload(f"{base}/masks", [*masks[:3], stray, *masks[4:]])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "mask_out_of_range" and body["file"] == stray.name
    assert "value 2" in body["detail"] and "head=1" in body["detail"]
    assert api.get(base).json()["masks"] == 0
    assert_unchanged(api, before)
    assert len(stored_files(api.store)) == blobs
    # The same values pass where they are declared.
    both = new_set(api, dataset_id, name="b", classes={"head": 1, "skull": 2})
    url = f"/v1/datasets/{dataset_id}/annotation-sets/{both['id']}/masks"
    assert api.upload(url, [*masks[:3], stray]).status_code == 201


def test_a_0_255_mask_is_refused_at_upload_when_no_classes_are_declared(api, hc18, tmp_path):
    images, masks = hc18
    dataset_id = with_images(api, images[:2])
    aset = new_set(api, dataset_id)
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    bright = relabelled(masks[0], tmp_path / "bright", fg=255)
    before = snapshot(api)
    response = api.upload(f"{base}/masks", [bright, masks[1]])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "mask_out_of_range"
    assert response.json()["file"] == bright.name and "255" in response.json()["detail"]
    assert_unchanged(api, before)
    # Declared, the same value is a class like any other.
    declared = new_set(api, dataset_id, name="b", classes={"head": 255})
    url = f"/v1/datasets/{dataset_id}/annotation-sets/{declared['id']}/masks"
    assert api.upload(url, [bright]).status_code == 201


def test_classes_are_inferred_from_the_values_uploaded(api, hc18, tmp_path):
    images, masks = hc18
    dataset_id = with_images(api, images)
    aset = new_set(api, dataset_id)
    assert aset["classes"] == {} and aset["classes_declared"] is False
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    assert api.upload(f"{base}/masks", masks[:4]).status_code == 201
    assert api.get(base).json()["classes"] == {"class_1": 1}
    three = relabelled(masks[4], tmp_path / "three", patch=3)
    assert api.upload(f"{base}/masks", [three]).status_code == 201
    got = api.get(base).json()
    assert got["classes"] == {"class_1": 1, "class_3": 3} and got["classes_declared"] is False


def finish(api: Api, dataset_id: int, set_id: int, masks: list[Path], out: Path, **params):
    """Submit an audit of the set and store results as a worker would (one per-class figure)."""
    submitted = api.post(
        "/v1/audits",
        json={"dataset_id": dataset_id, "annotation_set_id": set_id, "parameters": params},
    )
    assert submitted.status_code == 202, submitted.text
    audit_id = submitted.json()["id"]
    folder, results, run = engine_outputs(out, masks, [0.1 * (i + 1) for i in range(len(masks))])
    results = [
        dataclasses.replace(r, figures={"boundary_mean_class_1": 0.25, "evidence": 1.0})
        for r in results
    ]
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        assert lifecycle.complete_audit(session, api.store, audit_id, folder, results, run)
    return submitted.json(), audit_id


def test_class_names_reach_the_config_results_summary_and_scores_csv(api, hc18, tmp_path):
    images, masks = hc18
    dataset_id = with_images(api, images)
    aset = new_set(api, dataset_id, classes={"head": 1})
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    assert api.upload(f"{base}/masks", masks).status_code == 201
    submitted, audit_id = finish(api, dataset_id, aset["id"], masks, tmp_path / "out")
    assert submitted["parameters"]["classes"] == {"head": 1}  # what the engine's config gets

    audit = api.get(f"/v1/audits/{audit_id}").json()
    assert audit["summary"]["classes"] == {"head": 1}
    first = api.get(f"/v1/audits/{audit_id}/cases").json()["items"][0]
    assert list(first["dice_by_class"]) == ["head"]
    assert first["dice_by_class"]["head"] == pytest.approx(first["dice"][0])
    assert first["figures"] == {"boundary_mean_head": 0.25, "evidence": 1.0}
    one = api.get(f"/v1/audits/{audit_id}/cases/{first['case']}").json()
    assert one["figures"]["boundary_mean_head"] == 0.25

    export = api.get(f"/v1/audits/{audit_id}/export")
    assert export.status_code == 200
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        header = next(csv.reader(io.StringIO(zf.read("scores.csv").decode())))
        summary = zf.read("summary.json").decode()
    assert "dice_head" in header and "boundary_mean_head" in header
    assert not any("class_1" in column for column in header)
    assert '"head": 1' in summary


def test_undeclared_classes_keep_their_class_names(api, hc18, tmp_path):
    images, masks = hc18
    dataset_id = with_images(api, images)
    aset = new_set(api, dataset_id)
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    assert api.upload(f"{base}/masks", masks).status_code == 201
    submitted, audit_id = finish(api, dataset_id, aset["id"], masks, tmp_path / "out")
    assert submitted["parameters"]["classes"] == {"class_1": 1}
    first = api.get(f"/v1/audits/{audit_id}/cases").json()["items"][0]
    assert list(first["dice_by_class"]) == ["class_1"]
    assert "boundary_mean_class_1" in first["figures"]


def test_parameters_that_declare_other_classes_are_refused(api, hc18):
    images, masks = hc18
    dataset_id = with_images(api, images)
    aset = new_set(api, dataset_id, classes={"head": 1})
    base = f"/v1/datasets/{dataset_id}/annotation-sets/{aset['id']}"
    assert api.upload(f"{base}/masks", masks).status_code == 201
    response = api.post(
        "/v1/audits",
        json={
            "dataset_id": dataset_id,
            "annotation_set_id": aset["id"],
            "parameters": {"classes": {"skull": 1}},
        },
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_parameters"
    assert "declared on the annotation set" in response.json()["detail"]
    assert api.get("/v1/audits").json()["total"] == 0


def test_dicom_classes_come_from_segment_labels_and_declared_ones_match_by_name(
    api, _built, tmp_path
):
    cases = [dataclasses.replace(c) for c in _built[:4]]
    two = cases[2]  # a slab with a tumour: its SEG draws it as "Tissue"
    two.mask = seg_for(two.images, two.labels * 2, two.affine, kinds=(TUMOUR, TISSUE))
    dataset_id = new_dataset(api)
    archive = export_zip(tmp_path, cases)
    assert post_files(api, f"/v1/datasets/{dataset_id}/images", {"x.zip": archive}).is_success
    inferred = new_set(api, dataset_id)
    added = post_files(api, masks_url(dataset_id, inferred["id"]), {"x.zip": archive})
    assert added.status_code == 201, added.text
    url = f"/v1/datasets/{dataset_id}/annotation-sets/{inferred['id']}"
    assert api.get(url).json()["classes"] == {"Tumour": 1, "Tissue": 2}

    declared = new_set(api, dataset_id, name="b", classes={"Tumour": 1})
    before = snapshot(api)
    refused = post_files(api, masks_url(dataset_id, declared["id"]), {"x.zip": archive})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "mask_out_of_range" and "Tissue" in refused.json()["detail"]
    assert refused.json()["file"]
    assert_unchanged(api, before)
