"""A live dashboard for the browser tests: ``segaudit``'s app under uvicorn on a free loopback
port (in a thread of this process), on a PostgreSQL database of its own, with the results of
two real short audits run once per session: twelve hc18 cases (a third of their masks
corrupted with the benchmark's noise) and nine MR slabs of five slices. Chromium is Debian's
(``/usr/bin/chromium``), driven by Playwright; without it the tests skip, or fail under ``CI``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine
from app.main import create_app
from app.services import keys
from tests.app.conftest import RUN, make_settings, pg_server, unavailable  # noqa: F401
from tests.conftest import ROOT, copy_hc18, mr_nifti_cases

CHROMIUM = os.environ.get("SEGAUDIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "build" / "ui-screenshots"
# Seconds each on a CPU: 32 px, a U-Net of 8 and 16 channels, three epochs.
TINY: dict[str, Any] = {"size": 32, "channels": [8, 16], "epochs": 3, "batch_size": 4}


@dataclass
class Site:
    """The live server, its keys by role, and the two audits' ids."""

    url: str
    keys: dict[str, str]
    app: Any
    hc18: int
    mr: int

    def sessions(self) -> Any:
        return self.app.state.sessions()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(client: httpx.Client, name: str, images: Path, masks: Path) -> tuple[int, int]:
    dataset = client.post("/v1/datasets", json={"name": name})
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    files = [("files", (p.name, p.read_bytes())) for p in sorted(images.iterdir())]
    assert client.post(f"/v1/datasets/{dataset_id}/images", files=files).status_code == 201
    aset = client.post(f"/v1/datasets/{dataset_id}/annotation-sets", json={"name": "team-a"})
    set_id = aset.json()["id"]
    files = [("files", (p.name, p.read_bytes())) for p in sorted(masks.iterdir())]
    added = client.post(f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks", files=files)
    assert added.status_code == 201, added.text
    return dataset_id, set_id


def _audit(client: httpx.Client, app: Any, dataset_id: int, set_id: int) -> int:
    from worker.pipeline import Outcome, run_audit_job

    body = {"dataset_id": dataset_id, "annotation_set_id": set_id, "parameters": TINY}
    submitted = client.post("/v1/audits", json=body)
    assert submitted.status_code == 202, submitted.text
    audit_id = int(submitted.json()["id"])
    outcome = run_audit_job(
        audit_id, sessions=app.state.sessions, store=app.state.store, settings=app.state.settings
    )
    assert outcome is Outcome.succeeded, client.get(f"/v1/audits/{audit_id}").json()["error"]
    return audit_id


@pytest.fixture(scope="session")
def site(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: F811
    from bench.noise import corrupt_folder

    tmp = tmp_path_factory.mktemp("ui")
    name = f"segaudit_ui_{RUN}_{uuid.uuid4().hex[:6]}"
    url = pg_server.create(name)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = make_settings(tmp, url, device="cpu")
    app = create_app(settings)
    found: dict[str, str] = {}
    with app.state.sessions() as session:
        project = keys.get_or_create_project(session, "alpha")
        for role in Role:
            found[role.value] = keys.create_key(session, project, role, f"ui-{role.value}")[1]
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": found["annotator"]}) as client:
            images, masks = copy_hc18(tmp / "hc18", 12, step=4)
            noisy = tmp / "hc18" / "noisy"
            corrupt_folder(masks, noisy, fraction=0.34, protocol="mixed", seed=1)
            hc18 = _audit(client, app, *_load(client, "hc18", images, noisy))
            mr_images, mr_masks = mr_nifti_cases(tmp / "mr")
            mr = _audit(client, app, *_load(client, "mr", mr_images, mr_masks))
        yield Site(base, found, app, hc18, mr)
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.engine.dispose()
        pg_server.drop(name)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never a downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright (pip install playwright)", exc)
    if not Path(CHROMIUM).is_file():
        unavailable(f"Chromium at {CHROMIUM} (apt-get install chromium)", FileNotFoundError())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookie) and page; its screenshot is saved afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in(page: Any, site: Site, role: str) -> None:
    page.goto(f"{site.url}/ui")
    page.get_by_label("API key").fill(site.keys[role])
    page.get_by_role("button", name="Open the dashboard").click()
    page.wait_for_url(f"{site.url}/ui")
