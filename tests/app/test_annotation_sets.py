"""Annotation sets and their masks: matched to cases by name, checked against their image."""

from __future__ import annotations

import nrrd
import numpy as np
from PIL import Image

from tests.app.conftest import load_dataset, stored_files, zip_of


def with_images(api, images):
    dataset_id = api.post("/v1/datasets", json={"name": "d"}).json()["id"]
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images).status_code == 201
    set_id = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "a"}).json()["id"]
    return dataset_id, f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}"


def test_sets_and_masks(api, hc18):
    images, masks = hc18
    dataset_id, base = with_images(api, images)
    second = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "b"})
    assert second.status_code == 201
    again = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "b"})
    assert again.status_code == 409 and again.json()["code"] == "annotation_set_exists"
    sets = api.get(f"/v1/datasets/{dataset_id}/annotation-sets").json()
    assert [s["name"] for s in sets["items"]] == ["a", "b"]

    added = api.upload(f"{base}/masks", masks[:4])
    assert added.status_code == 201, added.text
    assert [m["case"] for m in added.json()["masks"]] == [p.stem for p in masks[:4]]
    assert {m["max_label"] for m in added.json()["masks"]} == {1}
    zipped = api.upload_bytes(f"{base}/masks", "rest.zip", zip_of(masks[4:]))
    assert zipped.status_code == 201 and zipped.json()["count"] == len(masks) - 4
    assert api.get(base).json()["masks"] == len(masks)
    page = api.get(f"{base}/masks", params={"limit": 3, "offset": 3}).json()
    assert page["total"] == len(masks)
    assert [m["case"] for m in page["items"]] == [p.stem for p in masks[3:6]]

    replaced = api.upload(f"{base}/masks", masks[:1])
    assert replaced.status_code == 409 and replaced.json()["code"] == "mask_exists"


def test_a_mask_with_no_case_is_refused_by_name(api, hc18, tmp_path):
    images, masks = hc18
    _, base = with_images(api, images[:3])
    stray = tmp_path / "999_HC.png"
    stray.write_bytes(masks[0].read_bytes())
    response = api.upload(f"{base}/masks", [*masks[:2], stray])
    assert response.status_code == 422
    assert response.json()["code"] == "missing_image" and response.json()["file"] == "999_HC.png"
    assert api.get(base).json()["masks"] == 0


def test_a_mask_of_another_shape_is_refused(api, hc18, tmp_path):
    images, masks = hc18
    _, base = with_images(api, images[:2])
    small = tmp_path / images[0].name
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(small)
    response = api.upload(f"{base}/masks", [small, masks[1]])
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "shape_mismatch" and body["file"] == images[0].name
    assert "(100, 80)" in body["detail"] and "(540, 800)" in body["detail"]
    blobs_before = len(stored_files(api.store))
    assert api.get(base).json()["masks"] == 0
    assert len(stored_files(api.store)) == blobs_before  # only the two images


def test_a_colour_mask_is_refused(api, hc18, tmp_path):
    images, _ = hc18
    _, base = with_images(api, images[:1])
    colour = tmp_path / images[0].name
    rgb = np.zeros((540, 800, 3), np.uint8)
    rgb[10:20, 10:20] = (255, 0, 0)
    Image.fromarray(rgb).save(colour)
    response = api.upload(f"{base}/masks", [colour])
    assert response.status_code == 422 and response.json()["code"] == "mask_not_integer"


def test_a_volume_mask_on_another_grid_is_refused(api, mr, tmp_path):
    images, masks = mr
    loaded = load_dataset(api, images, masks[1:], name="mr")  # breast1 only
    base = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}"
    label, header = nrrd.read(str(masks[0]))
    header["space origin"] = np.asarray(header["space origin"], float) + [0.0, 0.0, 13.0]
    moved = tmp_path / "brain1.nrrd"
    nrrd.write(
        str(moved),
        label,
        header={k: header[k] for k in ("space", "space directions", "space origin")},
    )
    response = api.upload(f"{base}/masks", [moved])
    assert response.status_code == 422
    assert response.json()["code"] == "geometry_mismatch"
    assert response.json()["file"] == "brain1.nrrd"
    assert api.upload(f"{base}/masks", [masks[0]]).status_code == 201
