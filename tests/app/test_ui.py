"""The dashboard's routes (``/ui``) through the app: the cookie sign-in by the API's key check,
pages over a finished audit, the PNG layers and their cache, and the JSON actions' refusals.
The browser tests are in ``tests/ui``.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
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
    """A PNG as RGBA (the layers are grey, colour or paletted with transparency)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


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
    for html in (home.text, page.text, api.client.get("/ui/login").text):
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith(("/", "?", "#")) for u in urls), urls  # no CDN
        for url in (u for u in urls if u.startswith("/ui/static/")):
            assert api.client.get(url).status_code == 200, url
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
    for wrong in ({"page": "0"}, {"min_score": "2"}, {"flagged": "maybe"}, {"review": "x"}):
        refused = api.client.get(f"/ui/audits/{finished}", params=wrong)
        assert refused.status_code == 422, (wrong, refused.text)
        assert refused.json()["code"] == "invalid_parameters"
        assert next(iter(wrong)) in refused.json()["detail"]


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


def test_a_512_slice_s_four_layers_are_drawn_at_full_size_from_a_live_server(api: Api, tmp_path):
    """Four layers of a 512x512 slice not drawn before (the volume already read), fetched one
    after another from a live server on loopback, for six slices.
    """
    import nibabel as nib

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    for i in range(8):
        # A smooth body with a brighter disc and some noise, as a scan's slice looks.
        body = 300 * np.exp(-((yy - 256) ** 2 + (xx - 256) ** 2) / 2 / 160**2)
        disc = ((yy - 256) ** 2 + (xx - 150 - 20 * i) ** 2 < 90**2).astype(np.uint8)
        plane = body + 80 * disc
        volume = np.stack([plane + rng.normal(0, 5, plane.shape) for _ in range(8)], axis=2)
        volume = volume.astype(np.float32)
        label = np.repeat(disc[..., None], 8, axis=2)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), images / f"v{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), masks / f"v{i}.nii.gz")
    loaded = load_dataset(api, sorted(images.iterdir()), sorted(masks.iterdir()), name="big")
    audit_id = finish(
        api,
        loaded,
        sorted(masks.iterdir()),
        tmp_path / "out",
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(api.client.app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        cookies = {COOKIE: api.headers["viewer"]["X-API-Key"]}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", cookies=cookies) as client:
            took = _draw_slices(client, f"/ui/audits/{audit_id}/cases/v0/layers")
    finally:
        server.should_exit = True
        thread.join(10)
    fastest, median = took[0], took[3]
    print(
        f"4 layers of a 512x512 slice on loopback: fastest {fastest * 1000:.0f} ms, median "
        f"{median * 1000:.0f} ms"
    )
    # The time is reported, not asserted (a shared machine's load is not the code's cost): the
    # 200 ms target is measured in docs/benchmarks.md.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _draw_slices(client: httpx.Client, base: str) -> list[float]:
    """The times to fetch the four layers of a slice not drawn before (z = 1..6), sorted."""
    assert client.get(f"{base}/image.png", params={"z": 0}).status_code == 200  # reads it
    took = []
    for z in range(1, 7):
        started = time.perf_counter()
        for layer in renders.LAYERS:
            response = client.get(f"{base}/{layer}.png", params={"z": z})
            assert response.status_code == 200
            assert png(response.content).shape[:2] == (512, 512)
        took.append(time.perf_counter() - started)
    return sorted(took)


def test_the_audit_page_of_10k_results_pages_them(api: Api, finished: int):
    """10,000 more results in the audit: the page (first 50, counts, histogram, queue) is
    rendered on the server, paged (its time is printed; the target is in docs/benchmarks.md).
    """
    from sqlalchemy import insert

    from app.db.tables import Audit, Case, ResultRow

    rng = np.random.default_rng(0)
    with api.sessions() as session:
        audit = session.get(Audit, finished)
        template = session.scalars(select(Case).where(Case.dataset_id == audit.dataset_id)).first()
        ids = session.scalars(
            insert(Case).returning(Case.id),
            [
                {
                    "dataset_id": audit.dataset_id,
                    "name": f"extra_{i:05d}",
                    "image_file_id": template.image_file_id,
                    "shape": template.shape,
                    "spacing": template.spacing,
                    "affine": template.affine,
                    "channels": template.channels,
                }
                for i in range(10_000)
            ],
        ).all()
        scores = rng.random(10_000)
        session.execute(
            insert(ResultRow),
            [
                {
                    "audit_id": finished,
                    "case_id": case_id,
                    "rank": 100 + i,
                    "noise_score": float(s),
                    "flagged": bool(s > 0.9),
                    "ce": float(s),
                    "dice_gap": float(s) / 2,
                    "dice": [1 - float(s) / 2],
                    "changed_fraction": 0.0,
                    "issue_fraction": 0.0,
                    "figures": {},  # as the seeded results have (words need the full set)
                }
                for i, (case_id, s) in enumerate(zip(ids, scores, strict=True))
            ],
        )
        session.commit()
    sign_in(api, "viewer")
    url = f"/ui/audits/{finished}"
    assert api.client.get(url).status_code == 200  # warm
    for params in ({}, {"sort": "-boundary_abs", "review": "unreviewed", "page": "3"}):
        started = time.perf_counter()
        response = api.client.get(url, params=params)
        took = time.perf_counter() - started
        assert response.status_code == 200
        assert response.text.count('class="case-link"') == 50
        assert "page 1 of 201" in response.text or "page 3 of 201" in response.text
        print(f"audit page with 10,009 results {params}: {took * 1000:.0f} ms")


def test_the_histogram_draws_the_flag_s_clean_component_and_the_threshold():
    from app.ui import charts

    rng = np.random.default_rng(0)
    evidence = np.concatenate([rng.normal(-3.0, 1.0, 800), rng.normal(6.0, 2.0, 200)])
    values = 0.5 + np.arctan(evidence) / np.pi
    fit = {"noisy_share": 0.2, "clean_centre": -3.0, "clean_spread": 1.0}
    xs = np.linspace(0, 1, 20001)
    dens = charts.clean_density(xs, **fit)
    # A density on the score's axis: it integrates to the clean share and peaks where the
    # clean evidence's centre lands.
    assert abs(float(dens.sum() * (xs[1] - xs[0])) - 0.8) < 0.01
    assert abs(float(xs[dens.argmax()]) - (0.5 + np.arctan(-3.0) / np.pi)) < 0.02
    scored = [(float(v), bool(v > 0.5)) for v in values]
    assert 0.3 < charts.threshold(scored) < 0.7
    assert charts.threshold([(0.2, False), (0.3, False)]) is None
    svg = charts.histogram(scored, mixture=fit)
    assert svg.count('class="threshold"') == 1 and 'class="mixture"' in svg
    assert 'class="mixture"' not in charts.histogram(scored)  # an audit from before the fit
    assert f"Histogram of 1000 noise scores, {sum(f for _, f in scored)} flagged" in svg


def test_a_queued_audit_shows_its_progress_and_is_cancelled(api: Api, hc18):
    from app.db.tables import Audit
    from tests.app.conftest import submit

    images, masks = hc18
    audit_id = submit(api, load_dataset(api, images, masks))["id"]
    with api.sessions() as session:  # progress as a worker reports it
        audit = session.get(Audit, audit_id)
        audit.status, audit.phase, audit.epoch, audit.epochs = "running", "train", 3, 10
        audit.percent, audit.eta_seconds, audit.flagged = 31.0, 42.0, 2
        session.commit()
    sign_in(api, "viewer")
    page = api.client.get(f"/ui/audits/{audit_id}")
    assert 'data-status="running"' in page.text and 'id="cancel"' not in page.text
    for shown in ('id="st-phase">train', 'id="st-epoch">3', 'id="st-epochs">10', "42 s"):
        assert shown in page.text, shown
    status = api.client.get(f"/ui/audits/{audit_id}/status").json()
    assert status["progress"]["flagged"] == 2 and status["status"] == "running"
    assert api.client.post(f"/ui/audits/{audit_id}/cancel").status_code == 403
    sign_in(api, "annotator")
    assert 'id="cancel"' in api.client.get(f"/ui/audits/{audit_id}").text
    cancelled = api.client.post(f"/ui/audits/{audit_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.client.post(f"/ui/audits/{audit_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "audit_finished"
