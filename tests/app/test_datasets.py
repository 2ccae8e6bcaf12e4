"""Datasets and their cases, through the API, on PostgreSQL and SQLite."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from app.db.tables import Case, StoredFile
from tests.app.conftest import load_dataset, stored_files, zip_of


def test_create_list_and_get_datasets(api):
    for name in ("a", "b", "c"):
        made = api.post("/v1/datasets", json={"name": name, "description": f"set {name}"})
        assert made.status_code == 201
        assert made.json()["name"] == name and made.json()["cases"] == 0
    page = api.get("/v1/datasets", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 3 and [d["name"] for d in page["items"]] == ["b", "c"]
    one = api.get(f"/v1/datasets/{page['items'][0]['id']}").json()
    assert one["description"] == "set b"
    twice = api.post("/v1/datasets", json={"name": "a"})
    assert twice.status_code == 409 and twice.json()["code"] == "dataset_exists"


def test_upload_images_as_files_then_as_zip(api, hc18):
    images, _ = hc18
    dataset_id = api.post("/v1/datasets", json={"name": "hc18"}).json()["id"]
    added = api.upload(f"/v1/datasets/{dataset_id}/images", images[:3])
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["count"] == 3
    first = body["cases"][0]
    assert first["name"] == images[0].stem and first["shape"] == [540, 800]
    assert first["image"]["sha256"] == hashlib.sha256(images[0].read_bytes()).hexdigest()
    assert first["image"]["size_bytes"] == images[0].stat().st_size

    zipped = api.upload_bytes(
        f"/v1/datasets/{dataset_id}/images", "more.zip", zip_of(images[3:], folder="scans/")
    )
    assert zipped.status_code == 201, zipped.text
    assert zipped.json()["count"] == len(images) - 3

    page = api.get(f"/v1/datasets/{dataset_id}/cases", params={"limit": 4}).json()
    assert page["total"] == len(images)
    assert [c["name"] for c in page["items"]] == [p.stem for p in images[:4]]
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == len(images)

    # Stored once each, by content, with size and checksum in the database.
    for image in images:
        sha = hashlib.sha256(image.read_bytes()).hexdigest()
        assert api.store.path(sha).read_bytes() == image.read_bytes()
    with api.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == len(images)
        sizes = dict(session.execute(select(StoredFile.name, StoredFile.size_bytes)).all())
    assert sizes == {p.name: p.stat().st_size for p in images}
    assert not list(api.store.tmp.iterdir())  # staging folders are gone


def test_a_case_is_never_replaced(api, hc18):
    images, _ = hc18
    dataset_id = api.post("/v1/datasets", json={"name": "hc18"}).json()["id"]
    assert api.upload(f"/v1/datasets/{dataset_id}/images", images[:2]).status_code == 201
    again = api.upload(f"/v1/datasets/{dataset_id}/images", images[1:3])
    assert again.status_code == 409
    assert again.json()["code"] == "case_exists" and again.json()["file"] == images[1].name
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == 2


def test_volumes_keep_their_geometry(api, mr):
    images, masks = mr
    loaded = load_dataset(api, images, masks, name="mr")
    cases = api.get(f"/v1/datasets/{loaded.dataset_id}/cases").json()["items"]
    brain = next(c for c in cases if c["name"] == "brain1")
    assert brain["shape"] == [256, 256, 25] and brain["spacing"][2] == pytest.approx(6.5)
    aset = api.get(f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}").json()
    assert aset["masks"] == 2
    assert len(stored_files(api.store)) == 4
