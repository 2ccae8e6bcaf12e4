"""Faults of the API's own resources: the storage's disk full while an upload is staged or
published, and the database restarted under a running API.

The disk is a real tmpfs of 64 MB mounted for the test (``tests.throwaway``); without the
right to mount, those tests are skipped with the reason, and
``test_a_full_disk_met_by_the_publish_itself_keeps_nothing`` injects ``ENOSPC`` into the
publish's rename instead, so the same outcome is checked on every machine. The database is a
PostgreSQL cluster of the test's own, stopped and started under the API.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine
from app.db.tables import Case, StoredFile
from app.main import create_app
from app.services import keys
from app.services.sweep import collect_orphans
from app.storage import Store, Written
from tests.app.conftest import Api, load_dataset, make_settings, unavailable
from tests.throwaway import Postgres, small_disk  # noqa: F401  (a fixture)


def _kept(api: Api, dataset_id: int) -> tuple[int, int, list[str], list[Path]]:
    """(cases of the dataset, file rows, blobs, staging entries) as they stand."""
    store = api.store
    with api.sessions() as session:
        cases = session.scalar(select(func.count()).where(Case.dataset_id == dataset_id))
        files = session.scalar(select(func.count()).select_from(StoredFile))
    blobs = [p.name for p in store.blob_paths()]
    staging = list(store.tmp.iterdir()) if store.tmp.is_dir() else []
    return int(cases or 0), int(files or 0), blobs, staging


def _new_dataset(api: Api) -> int:
    response = api.post("/v1/datasets", json={"name": f"d-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _refused_for_space(response: httpx.Response, api: Api, names: list[str]) -> None:
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["code"] == "storage_full"
    assert "no space left" in body["detail"] and "try again" in body["detail"]
    assert str(api.settings.storage) not in response.text  # no server path
    if "file" in body:
        assert body["file"] in names


def test_a_full_disk_while_an_upload_is_staged_keeps_nothing_and_a_retry_succeeds(
    api_factory,
    hc18,
    small_disk,  # noqa: F811
):
    api = api_factory(storage_dir=small_disk.path)
    images, _ = hc18
    dataset_id = _new_dataset(api)
    need = sum(p.stat().st_size for p in images)
    small_disk.fill(leave=need // 3)  # room for about three of the nine images

    refused = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    _refused_for_space(refused, api, [p.name for p in images])
    assert refused.json()["file"] in [p.name for p in images]  # the file it could not write
    assert _kept(api, dataset_id) == (0, 0, [], [])  # no rows, no blobs, no staging

    small_disk.free()
    retried = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    assert retried.status_code == 201, retried.text
    cases, files, blobs, staging = _kept(api, dataset_id)
    assert (cases, files, len(blobs), staging) == (9, 9, 9, [])


def test_a_full_disk_during_the_publish_keeps_nothing_and_a_retry_succeeds(
    api_factory,
    hc18,
    small_disk,  # noqa: F811
):
    """The files are all staged, then the disk fills as they are moved into the store: the
    blobs published before the failure are removed again, and no row stays.
    """
    api = api_factory(storage_dir=small_disk.path)
    images, masks = hc18
    first = load_dataset(api, images[:1], masks[:1], name="first")  # tmp/ and blobs/ exist
    before = _kept(api, first.dataset_id)
    dataset_id = _new_dataset(api)
    new = images[1:]
    known = {p.name[:2] for p in api.store.blob_paths()}
    prefixes = {_sha(p)[:2] for p in new} - known
    assert len(prefixes) >= 2  # the publish needs at least two new folders under blobs/
    # Staging takes a folder, its files/ folder and one file per image; then the publish
    # may make one new blobs/<xx>/ folder, and the next one finds the disk full.
    small_disk.fill_inodes(leave=2 + len(new) + 1)

    refused = api.upload(f"/v1/datasets/{dataset_id}/images", new)
    _refused_for_space(refused, api, [p.name for p in new])
    cases, files, blobs, staging = _kept(api, dataset_id)
    assert (cases, files, sorted(blobs), staging) == (0, before[1], sorted(before[2]), [])

    small_disk.free()
    retried = api.upload(f"/v1/datasets/{dataset_id}/images", new)
    assert retried.status_code == 201, retried.text
    cases, files, blobs, staging = _kept(api, dataset_id)
    assert (cases, files, len(blobs), staging) == (
        len(new),
        before[1] + len(new),
        len(before[2]) + len(new),
        [],
    )


def test_a_full_disk_met_by_the_publish_itself_keeps_nothing(api, hc18, monkeypatch):
    """The fallback where no file system can be filled: the third blob's rename fails with
    ENOSPC, injected at the storage layer.
    """
    images, _ = hc18
    dataset_id = _new_dataset(api)
    real_replace = os.replace
    calls: list[str] = []

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(str(target))
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        real_replace(source, target)

    monkeypatch.setattr("app.storage.os.replace", replace)
    refused = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    _refused_for_space(refused, api, [p.name for p in images])
    assert len(calls) == 3  # two blobs were published before it, and removed again
    assert _kept(api, dataset_id) == (0, 0, [], [])

    monkeypatch.setattr("app.storage.os.replace", real_replace)
    retried = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    assert retried.status_code == 201, retried.text
    assert _kept(api, dataset_id)[:2] == (9, 9)


@pytest.fixture
def pg_api(tmp_path: Path) -> Iterator[tuple[Api, Postgres]]:
    """An API on a PostgreSQL cluster of its own, which the test may stop and start."""
    try:
        server = Postgres.create()
        server.start()
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        unavailable("a throwaway PostgreSQL (initdb and pg_ctl as the postgres user)", exc)
    try:
        url = server.create_database("segaudit")
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        settings = make_settings(tmp_path, url)
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            with app.state.sessions() as session:
                project = keys.get_or_create_project(session, "alpha")
                headers = {}
                for role in (Role.viewer, Role.annotator):
                    _, secret = keys.create_key(session, project, role, role.value)
                    headers[role.value] = {"X-API-Key": secret}
            yield Api(client, settings, app.state.sessions, headers), server
    finally:
        server.remove()


def test_the_api_answers_503_while_the_database_restarts_and_reconnects_after(pg_api):
    api, server = pg_api
    assert api.get("/v1/datasets").status_code == 200  # the pool holds a connection now

    server.stop()
    down = api.get("/v1/datasets")
    assert down.status_code == 503, down.text
    assert down.json()["code"] == "database_unavailable"
    assert down.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in down.text and "psycopg" not in down.text  # no internals
    created = api.post("/v1/datasets", json={"name": "during"})
    assert created.status_code == 503 and created.json()["code"] == "database_unavailable"

    server.start()
    # The same API process, without a restart: pool_pre_ping replaces the dead connections.
    assert api.get("/v1/datasets").status_code == 200
    again = api.post("/v1/datasets", json={"name": "during"})
    assert again.status_code == 201, again.text  # the refused one was not half-made
    listed = api.get("/v1/datasets").json()
    assert [d["name"] for d in listed["items"]] == ["during"]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_database_restart_during_a_publish_keeps_no_rows_and_gc_takes_the_blobs(
    pg_api, hc18, monkeypatch
):
    """The database goes while an upload's files are being published: 503, no row; the blobs
    it had published stay (the database could not say whether another row names them) until
    ``segaudit storage gc`` collects them, and the upload sent again succeeds.
    """
    api, server = pg_api
    images, _ = hc18
    dataset_id = _new_dataset(api)
    store = api.store
    real_publish = Store.publish
    published: list[str] = []

    def publish(self: Store, written: Written) -> bool:
        created = real_publish(self, written)
        published.append(written.sha256)
        if len(published) == 3:
            server.stop()  # the next statement (the commit) finds the database gone
        return created

    monkeypatch.setattr(Store, "publish", publish)
    refused = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    monkeypatch.setattr(Store, "publish", real_publish)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "database_unavailable"

    server.start()
    assert _kept(api, dataset_id)[:2] == (0, 0)  # no rows
    assert sorted(p.name for p in store.blob_paths()) == sorted(published)
    with api.sessions() as session:
        collected = collect_orphans(session, store, 0)
    assert sorted(o.path.name for o in collected) == sorted(published)
    assert _kept(api, dataset_id) == (0, 0, [], [])

    retried = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    assert retried.status_code == 201, retried.text
    cases, files, blobs, staging = _kept(api, dataset_id)
    assert (cases, files, len(blobs), staging) == (9, 9, 9, [])
