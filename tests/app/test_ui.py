"""The dashboard's routes (``/ui``) through the app: the cookie sign-in by the API's key check,
pages over a finished audit, the PNG layers and their cache, and the JSON actions' refusals.
The browser tests are in ``tests/ui``.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from app.api.routes.ui import COOKIE
from app.db.tables import Review
from app.services import renders
from tests.app.conftest import Api, load_dataset
from tests.app.review_data import SCORES, finish


@pytest.fixture
def finished(api: Api, hc18, tmp_path) -> int:
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    return finish(api, loaded, masks, tmp_path / "out", SCORES)


def sign_in(api: Api, role: str) -> None:
    api.client.cookies.clear()
    key = api.headers[role]["X-API-Key"]
    response = api.client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert key not in response.headers["location"]


def png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_pages_need_a_valid_key(api: Api):
    assert api.client.get("/ui", follow_redirects=False).headers["location"] == "/ui/login"
    wrong = api.client.post("/ui/login", data={"key": "sa_wrong"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert "not valid" in wrong.text and COOKIE not in wrong.headers.get("set-cookie", "")
    assert api.client.post("/ui/audits/1/cancel").json()["code"] == "missing_key"


def test_overview_audit_and_case_pages(api: Api, finished: int):
    sign_in(api, "viewer")
    home = api.client.get("/ui")
    assert home.status_code == 200
    assert "hc18" in home.text and "9 cases" in home.text and f"audit {finished}" in home.text
    page = api.client.get(f"/ui/audits/{finished}")
    assert page.status_code == 200
    assert "0 of 4</strong> flagged cases reviewed" in page.text
    assert 'class="threshold"' in page.text and 'class="mixture"' in page.text
    assert 'id="start-review"' not in page.text  # a viewer gets no review controls
    flagged = api.client.get(f"/ui/audits/{finished}", params={"flagged": "true", "sort": "case"})
    rows = flagged.text.count('class="case-link"')
    assert rows == 4
    missing = api.client.get(f"/ui/audits/{finished}/cases/no-such-case")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_sort_by_a_figure_and_refuse_an_unknown_sort(api: Api, finished: int):
    sign_in(api, "viewer")
    by_gap = api.client.get(f"/ui/audits/{finished}", params={"sort": "-dice_gap"})
    assert by_gap.status_code == 200
    bad = api.client.get(f"/ui/audits/{finished}", params={"sort": "nonsense"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_parameters"
    figure = api.client.get(f"/ui/audits/{finished}", params={"sort": "-boundary_abs"})
    assert figure.status_code == 200


def test_layers_are_drawn_once_and_cached(api: Api, finished: int):
    sign_in(api, "viewer")
    page = api.client.get(f"/ui/audits/{finished}", params={"sort": "rank"})
    case = page.text.split('class="case-link" href="')[1].split('"')[0]
    assert api.client.get(case).status_code == 200
    cache = api.store.root / renders.CACHE
    before = set(cache.rglob("*.png")) if cache.exists() else set()
    layers, raw = {}, {}
    for layer in renders.LAYERS:
        response = api.client.get(f"{case}/layers/{layer}.png")
        assert response.status_code == 200, response.text
        raw[layer] = response.content
        layers[layer] = png(response.content)
        assert max(layers[layer].shape[:2]) <= renders.MAX_SIDE
    drawn = set(cache.rglob("*.png")) - before
    assert len(drawn) == 4
    stamps = {p: p.stat().st_mtime_ns for p in drawn}
    time.sleep(0.01)
    assert api.client.get(f"{case}/layers/given.png").content == raw["given"]
    assert {p: p.stat().st_mtime_ns for p in drawn} == stamps  # read back, not drawn again
    assert layers["given"][..., 3].any()  # the given mask has foreground
    assert (layers["given"][..., 3] > 0).sum() > (layers["cleansed"][..., 3] > 0).sum()
    out = api.client.get(f"{case}/layers/image.png", params={"z": 3})
    assert out.status_code == 422 and "outside" in out.json()["detail"]


def test_reviews_need_a_reviewer_and_are_stored(api: Api, finished: int):
    sign_in(api, "viewer")
    url = f"/ui/audits/{finished}/review"
    assert api.client.get(url, follow_redirects=False).status_code == 303
    first = api.client.get(url, follow_redirects=False).headers["location"]
    case = first.rsplit("/", 1)[1]
    body = {"decision": "accept_cleansed", "comment": "boundary"}
    refused = api.client.post(f"{first}/review", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    sign_in(api, "reviewer")
    page = api.client.get(first)
    assert 'data-decision="accept_cleansed"' in page.text
    saved = api.client.post(f"{first}/review", json=body)
    assert saved.status_code == 201, saved.text
    with api.sessions() as session:
        stored = session.scalars(select(Review)).all()
    assert [(r.decision, r.comment, r.reviewer) for r in stored] == [
        ("accept_cleansed", "boundary", "alpha-reviewer")
    ]
    after = api.client.get(url, follow_redirects=False).headers["location"]
    assert after.rsplit("/", 1)[1] != case  # the queue moved on
    assert "1 of 4</strong>" in api.client.get(f"/ui/audits/{finished}").text
    resolved = api.client.post(f"/ui/audits/{finished}/resolve", json={"policy": "keep_original"})
    assert resolved.status_code == 201, resolved.text
    download = api.client.get(resolved.json()["download"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
