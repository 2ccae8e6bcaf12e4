"""Fixtures for the service: real PostgreSQL and SQLite, a real broker, real sample images.

PostgreSQL (``SEGAUDIT_TEST_POSTGRES``, default 127.0.0.1:5432 as ``postgres``) gets a fresh
database per test run, dropped at the end; Redis (``SEGAUDIT_TEST_REDIS``, default db 15 on
127.0.0.1:6379) is used with queue names unique to the run. When either cannot be reached, the
tests that need it fail if ``CI`` is set and are skipped, with the reason, otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.db import migrate
from app.db.base import Base
from app.db.enums import Role
from app.db.session import make_engine
from app.main import create_app
from app.services import keys
from app.settings import Settings
from app.storage import Store
from models.results import CaseResult, SliceResult
from tests.conftest import HC18, MR
from tests.imaging.dicom.conftest import (  # noqa: F401  fixtures: DICOM cases, Orthanc
    _built,
    built,
    orthanc,
)

PG_URL = os.environ.get(
    "SEGAUDIT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SEGAUDIT_TEST_REDIS", "redis://127.0.0.1:6379/15")
RUN = uuid.uuid4().hex[:8]


def unavailable(what: str, exc: BaseException) -> None:
    """Fail under CI, skip (visibly) elsewhere: a test that needs a server never passes quietly."""
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide it")
    pytest.skip(message)


def _admin_conninfo() -> str:
    url = make_url(PG_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class PgServer:
    def create(self, name: str) -> str:
        with psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    try:
        with psycopg.connect(_admin_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {make_url(PG_URL).render_as_string()}", exc)
    return PgServer()


@pytest.fixture
def fresh_pg(pg_server: PgServer) -> Iterator[str]:
    """An empty PostgreSQL database of its own (for migration tests)."""
    name = f"segaudit_test_{RUN}_{uuid.uuid4().hex[:6]}"
    url = pg_server.create(name)
    yield url
    pg_server.drop(name)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One migrated database per backend for the whole run; tests empty it after themselves."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "segaudit.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = f"segaudit_test_{RUN}_{uuid.uuid4().hex[:6]}"  # one per conftest that uses it
    engine = make_engine(server.create(name))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    server.drop(name)


@pytest.fixture
def db_url(migrated: Engine) -> Iterator[str]:
    yield migrated.url.render_as_string(hide_password=False)
    with migrated.begin() as conn:  # DELETE beats TRUNCATE on tables this small
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


# The API, with keys of every role in project "alpha" and an admin key in project "beta".


@dataclass
class Api:
    client: TestClient
    settings: Settings
    sessions: sessionmaker[Session]
    headers: dict[str, dict[str, str]]

    @property
    def store(self) -> Store:
        return Store(self.settings.storage)

    def get(self, url: str, role: str = "viewer", **kw: Any) -> httpx.Response:
        headers = {**self.headers[role], **kw.pop("headers", {})}
        return self.client.get(url, headers=headers, **kw)

    def post(self, url: str, role: str = "annotator", **kw: Any) -> httpx.Response:
        headers = {**self.headers[role], **kw.pop("headers", {})}
        return self.client.post(url, headers=headers, **kw)

    def upload(self, url: str, paths: list[Path], role: str = "annotator") -> httpx.Response:
        files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        return self.client.post(url, headers=self.headers[role], files=files)

    def upload_bytes(self, url: str, name: str, data: bytes) -> httpx.Response:
        files = [("files", (name, data, "application/octet-stream"))]
        return self.client.post(url, headers=self.headers["annotator"], files=files)


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": db_url,
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "audit_queue": f"test-{RUN}-{uuid.uuid4().hex[:6]}",
        "cors_origins": ["https://dash.example.org"],
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def api_factory(tmp_path: Path, db_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> Api:
        settings = make_settings(tmp_path, db_url, **overrides)
        app = create_app(settings)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        headers = {}
        with app.state.sessions() as session:
            for project, roles in (("alpha", list(Role)), ("beta", [Role.admin])):
                found = keys.get_or_create_project(session, project)
                for role in roles:
                    _, secret = keys.create_key(session, found, role, f"{project}-{role.value}")
                    label = role.value if project == "alpha" else "other"
                    headers[label] = {"X-API-Key": secret}
        return Api(client, settings, app.state.sessions, headers)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory: Any) -> Api:
    return api_factory()


# Real sample data.


@pytest.fixture
def hc18(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Nine real hc18 cases (PNG 800x540, masks 0/1): image paths and mask paths."""
    names = sorted(p.name for p in (HC18 / "images").iterdir())[::6][:9]
    images, masks = tmp_path / "hc18" / "images", tmp_path / "hc18" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for name in names:
        shutil.copy(HC18 / "images" / name, images / name)
        shutil.copy(HC18 / "masks" / name, masks / name)
    return sorted(images.iterdir()), sorted(masks.iterdir())


@pytest.fixture
def mr(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Two real MR volumes (NRRD) with their label maps, named brain1 and breast1."""
    images, masks = tmp_path / "mr" / "images", tmp_path / "mr" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for name in ("brain1", "breast1"):
        shutil.copy(MR / f"{name}_image.nrrd", images / f"{name}.nrrd")
        shutil.copy(MR / f"{name}_label.nrrd", masks / f"{name}.nrrd")
    return sorted(images.iterdir()), sorted(masks.iterdir())


def zip_of(paths: list[Path], *, folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, f"{folder}{path.name}")
    return buffer.getvalue()


@dataclass
class Loaded:
    dataset_id: int
    set_id: int
    case_ids: dict[str, int]


def load_dataset(api: Api, images: list[Path], masks: list[Path], *, name: str = "hc18") -> Loaded:
    """A dataset with ``images`` and an annotation set with ``masks``, through the API."""
    dataset = api.post("/v1/datasets", json={"name": name})
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    added = api.upload(f"/v1/datasets/{dataset_id}/images", images)
    assert added.status_code == 201, added.text
    aset = api.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "team-a"})
    assert aset.status_code == 201, aset.text
    set_id = aset.json()["id"]
    masked = api.upload(f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks", masks)
    assert masked.status_code == 201, masked.text
    return Loaded(dataset_id, set_id, {c["name"]: c["id"] for c in added.json()["cases"]})


def stored_files(store: Store) -> list[Path]:
    """Every file under the store's root (blobs and leftovers in tmp)."""
    return [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else []


def submit(api: Api, loaded: Loaded, **parameters: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/audits",
        json={
            "dataset_id": loaded.dataset_id,
            "annotation_set_id": loaded.set_id,
            "parameters": parameters,
        },
    )
    assert response.status_code == 202, response.text
    return response.json()


def engine_outputs(
    out: Path, masks: list[Path], scores: list[float]
) -> tuple[Path, list[CaseResult], dict[str, Any]]:
    """What ``models.audit.run_audit`` hands a worker: its output folder, the results (most
    suspect first) and run.json's content; the given masks, edited, stand in for the cleansed.
    """
    from imaging import layout
    from imaging.formats import read_mask
    from imaging.write import write_array
    from models import outputs

    results = []
    for mask, s in zip(masks, scores, strict=True):
        given = read_mask(mask, case=mask.stem)  # new files on the mask's grid, in its format
        cleansed = given.array.copy()
        cleansed[: cleansed.shape[0] // 4] = 0
        issues = (cleansed != given.array).astype(np.uint8) * 255
        files = {}
        for folder, array in (
            (layout.CLEANSED, cleansed),
            (layout.PSEUDO, cleansed),
            (layout.ISSUE_MAPS, issues),
        ):
            files[folder] = Path(folder) / mask.name
            write_array(out / files[folder], array, given.geometry, kind=folder)
        depth = given.geometry.shape[2] if given.geometry.is_3d else 0
        results.append(
            CaseResult(
                case=mask.stem,
                noise_score=s,
                flagged=s > 0.5,
                ce=s * 2,
                dice_gap=s / 2,
                dice=(1 - s / 2,),
                changed_fraction=s / 10,
                issue_fraction=s / 20,
                slices=tuple(SliceResult(z, 0.1 * z, 100, 90 + z, z) for z in range(depth)),
                cleansed=files[layout.CLEANSED],
                pseudo_label=files[layout.PSEUDO],
                issue_map=files[layout.ISSUE_MAPS],
            )
        )
    results.sort(key=CaseResult.sort_key)
    outputs.write_scores(out / layout.SCORES, results, num_classes=2)  # as the engine writes it
    run = {
        "timings": {"load_s": 1.5, "train_s": 20.0, "total_s": 23.0},
        "summary": {
            "filter_degenerate": False,
            "filter_reason": "",
            "mixture": {"noisy_share": 0.3, "clean_centre": -2.0, "clean_spread": 1.0},
        },
    }
    return out, results, run
