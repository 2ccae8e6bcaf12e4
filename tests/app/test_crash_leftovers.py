"""Nothing left behind by a crash: a real API process killed with SIGKILL while it unpacks an
upload, and again while it publishes one, leaves staging and unnamed blobs that the next
start-up removes (here with both age thresholds at 0: nothing else uses the store).

The phases are found from outside, with no hook in the service: a zip of 3000 distinct small
PNGs takes seconds to unpack (each entry is written and fsynced into the staging folder), and
its publish (3000 renames before one commit) lasts long enough to be seen by polling the blob
folder. Each kill is checked to have landed in its phase: files in staging and no blob yet;
blobs in the store and no committed case.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine, make_sessions
from app.db.tables import Case, StoredFile
from app.services import keys
from app.storage import Store

FILES = 3000
ROOT = Path(__file__).resolve().parents[2]


def _zip_of_pngs(count: int) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            pixels = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            archive.writestr(f"case{index:05d}.png", png.getvalue())
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn app.main:create_app --factory`` on loopback, its output in a log file."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.upload_path = ""  # the dataset's images, once created

    def start(self, **extra: str) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.tmp_path / f"api-{port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the API exited at start-up"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the API did not start within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, Store, str, str]]:
    db_url = f"sqlite:///{tmp_path / 'segaudit.db'}"
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with make_sessions(engine)() as session:
        project = keys.get_or_create_project(session, "alpha")
        _, secret = keys.create_key(session, project, Role.annotator, "crash")
    engine.dispose()
    env = {
        "SEGAUDIT_DATA_DIR": str(tmp_path / "var"),
        "SEGAUDIT_DATABASE_URL": db_url,
        "SEGAUDIT_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "TMPDIR": str(tmp_path / "systmp"),  # starlette's spooled parts, kept out of /tmp
    }
    (tmp_path / "systmp").mkdir()
    server = Server(tmp_path, env)
    yield server, Store(tmp_path / "var" / "storage"), db_url, secret
    server.stop()


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _upload_in_background(server: Server, secret: str, body: bytes) -> subprocess.Popen[bytes]:
    """Send the upload from another process, so that this one is free to poll and kill."""
    script = (
        "import sys, httpx\n"
        "data = sys.stdin.buffer.read()\n"
        "try:\n"
        f"    httpx.post({server.url!r} + sys.argv[1], headers={{'X-API-Key': {secret!r}}},\n"
        "               files=[('files', ('cases.zip', data, 'application/zip'))], timeout=300)\n"
        "except httpx.HTTPError:\n"
        "    pass\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script, server.upload_path],
        stdin=subprocess.PIPE,
    )
    assert client.stdin is not None
    client.stdin.write(body)
    client.stdin.close()
    return client


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.002)
    raise AssertionError(f"never saw {what}")


def _counts(db_url: str) -> tuple[int, int]:
    engine = make_engine(db_url)
    try:
        with make_sessions(engine)() as session:
            files = session.scalar(select(func.count()).select_from(StoredFile)) or 0
            cases = session.scalar(select(func.count()).select_from(Case)) or 0
    finally:
        engine.dispose()
    return files, cases


def _unnamed_blobs(store: Store, db_url: str) -> list[Path]:
    engine = make_engine(db_url)
    try:
        with make_sessions(engine)() as session:
            named = set(session.scalars(select(StoredFile.sha256)))
    finally:
        engine.dispose()
    return [p for p in store.blob_paths() if p.name not in named]


def test_sigkill_during_unpack_and_publish_leaves_nothing_after_restart(setup):
    server, store, db_url, secret = setup
    body = _zip_of_pngs(FILES)
    server.start()
    created = httpx.post(
        f"{server.url}/v1/datasets", headers={"X-API-Key": secret}, json={"name": "crash"}
    )
    assert created.status_code == 201, created.text
    server.upload_path = f"/v1/datasets/{created.json()['id']}/images"

    # Phase 1: unpacking. Entries are arriving in staging; nothing is published yet.
    client = _upload_in_background(server, secret, body)
    _wait_for(
        lambda: sum(1 for p in _files(store.tmp) if p.suffix == ".png") >= 100,
        "the upload's entries in staging",
    )
    server.kill()
    client.wait(timeout=60)
    staged = [p for p in _files(store.tmp) if p.suffix == ".png"]
    assert 100 <= len(staged) < FILES and not list(store.blob_paths())  # killed mid-unpack

    # Phase 2: publishing. Blobs are in the store; their rows are not committed.
    server.start()  # default ages: the fresh staging of phase 1 survives this start-up
    assert _files(store.tmp)
    client = _upload_in_background(server, secret, body)
    _wait_for(lambda: any(store.blob_paths()), "the upload's first blob")
    server.kill()
    client.wait(timeout=60)
    assert _counts(db_url) == (0, 0), "the kill came after the commit; the test needs more files"
    leftovers = _unnamed_blobs(store, db_url)
    assert leftovers and _files(store.tmp)  # what a crash leaves

    # Restart: the start-up sweep removes the staging of both kills and every unnamed blob.
    server.start(SEGAUDIT_STAGING_MAX_AGE_S="0", SEGAUDIT_ORPHAN_BLOB_MIN_AGE_S="0")
    assert _files(store.tmp) == []
    assert _unnamed_blobs(store, db_url) == []
    assert not any(p.exists() for p in leftovers)

    # The service works as before: the same upload now completes and keeps all its blobs.
    done = httpx.post(
        f"{server.url}{server.upload_path}",
        headers={"X-API-Key": secret},
        files=[("files", ("cases.zip", body, "application/zip"))],
        timeout=300,
    )
    assert done.status_code == 201, done.text
    assert _counts(db_url)[1] == FILES
    assert _unnamed_blobs(store, db_url) == [] and _files(store.tmp) == []


def _make_old(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for each in [*path.rglob("*"), path]:
        os.utime(each, (then, then))


def test_staging_is_swept_on_schedule_when_requests_stage_files(tmp_path, monkeypatch):
    """The schedule with no scheduler: ``new_folder`` sweeps at most every SWEEP_EVERY_S."""
    from app import storage

    store = Store(tmp_path / "storage", staging_max_age_s=3600)
    first = store.new_folder()  # the first sweep: nothing there yet
    (first / "files").mkdir()
    (first / "files" / "a.png").write_bytes(b"a")
    _make_old(first, 2 * 3600)
    fresh = store.new_folder()  # within SWEEP_EVERY_S of the last sweep: no sweep
    assert first.exists()
    monkeypatch.setattr(storage, "SWEEP_EVERY_S", 0.0)
    third = store.new_folder()  # due: the stale folder goes, the fresh ones stay
    assert not first.exists() and fresh.exists() and third.exists()
    # A folder older than the threshold with one recent file in it is live: it stays.
    (fresh / "old.png").write_bytes(b"o")
    _make_old(fresh, 2 * 3600)
    (fresh / "new.png").write_bytes(b"n")
    assert store.sweep_staging(3600) == []
    assert Store(tmp_path / "storage").staging_max_age_s is None  # workers: no sweep


def test_publish_makes_a_blob_look_new_even_when_it_was_there(tmp_path):
    """So that gc's age threshold protects a blob whose row is about to be committed."""
    from app.storage import copy_stream

    store = Store(tmp_path / "storage")
    for _ in range(2):
        folder = store.new_folder()
        written = copy_stream(io.BytesIO(b"same content"), folder / "x.png")
        store.publish(written)
        blob = store.path(written.sha256)
        assert time.time() - blob.stat().st_mtime < 60
        _make_old(blob, 3 * 3600)
