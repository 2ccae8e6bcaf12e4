"""``segaudit submit`` against a real service (uvicorn on a free port, PostgreSQL and SQLite):
the key from the environment, adding to an existing dataset, cleaning up after a refused
upload, and re-attaching to an audit by id.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import uvicorn

from app.db.enums import Role
from app.main import create_app
from app.services import keys, lifecycle
from cli.main import main
from cli.submit import default_name
from tests.app.conftest import engine_outputs, make_settings


@dataclass
class Service:
    url: str
    app: object
    key: str
    admin: str

    def get(self, path: str) -> dict:
        import httpx

        response = httpx.get(f"{self.url}{path}", headers={"X-API-Key": self.admin})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def service(tmp_path, db_url):
    app = create_app(make_settings(tmp_path, db_url))
    with app.state.sessions() as session:
        project = keys.get_or_create_project(session, "lab")
        _, key = keys.create_key(session, project, Role.annotator, "batch")
        _, admin = keys.create_key(session, project, Role.admin, "boss")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Service(f"http://127.0.0.1:{port}", app, key, admin)
    server.should_exit = True
    thread.join(10)


def submit(capsys, service, *args):
    try:
        code = main(["submit", "--server", service.url, "--quiet", *map(str, args)])
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_key_comes_from_the_environment(service, hc18, monkeypatch, capsys):
    images, masks = hc18
    monkeypatch.delenv("SEGAUDIT_API_KEY", raising=False)
    code, _, err = submit(capsys, service, "--images", images[0].parent, "--masks", masks[0].parent)
    assert code == 2 and "SEGAUDIT_API_KEY" in err
    assert service.get("/v1/datasets")["total"] == 0

    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    code, out, err = submit(
        capsys, service, "--images", images[0].parent, "--masks", masks[0].parent
    )
    assert code == 0, err
    assert "queued (9 cases)" in out
    [dataset] = service.get("/v1/datasets")["items"]
    assert dataset["name"].startswith("hc18/images 20") and dataset["cases"] == 9
    [aset] = service.get(f"/v1/datasets/{dataset['id']}/annotation-sets")["items"]
    assert aset["name"] == "hc18/masks"


def test_masks_go_into_an_existing_dataset(service, hc18, monkeypatch, capsys, tmp_path):
    images, masks = hc18
    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    first = ["--images", images[0].parent, "--masks", masks[0].parent, "--dataset", "fetal"]
    assert submit(capsys, service, *first)[0] == 0
    [dataset] = service.get("/v1/datasets")["items"]
    rater_b = tmp_path / "rater-b"
    rater_b.mkdir()
    for mask in masks:
        (rater_b / mask.name).write_bytes(mask.read_bytes())

    code, out, err = submit(capsys, service, "--dataset-id", dataset["id"], "--masks", rater_b)
    assert code == 0, err
    assert f"dataset {dataset['id']} 'fetal': 9 cases" in out
    assert service.get("/v1/datasets")["total"] == 1
    sets = service.get(f"/v1/datasets/{dataset['id']}/annotation-sets")["items"]
    assert [s["name"] for s in sets] == ["hc18/masks", "rater-b"]
    audits = service.get("/v1/audits")["items"]
    assert sorted(a["annotation_set_id"] for a in audits) == sorted(s["id"] for s in sets)

    code, _, err = submit(
        capsys, service, "--dataset-id", dataset["id"], "--masks", rater_b, "--images", images[0]
    )
    assert code == 2 and "leave out --images" in err


def test_a_refused_upload_leaves_nothing_behind(service, hc18, monkeypatch, capsys, tmp_path):
    images, masks = hc18
    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    bad = tmp_path / "bad" / "masks"
    bad.mkdir(parents=True)
    for mask in masks:
        (bad / mask.name).write_bytes(mask.read_bytes())
    (bad / masks[0].name).write_bytes(b"not a png at all")

    code, _, err = submit(capsys, service, "--images", images[0].parent, "--masks", bad)
    assert code == 2 and masks[0].name in err
    assert "deleted dataset" in err
    assert service.get("/v1/datasets")["total"] == 0
    store = service.app.state.store
    assert not store.blobs.exists() or not any(p.is_file() for p in store.blobs.rglob("*"))

    # Into an existing dataset: only the new annotation set goes.
    assert submit(capsys, service, "--images", images[0].parent, "--masks", masks[0].parent)[0] == 0
    [dataset] = service.get("/v1/datasets")["items"]
    code, _, err = submit(capsys, service, "--dataset-id", dataset["id"], "--masks", bad)
    assert code == 2 and "deleted annotation set" in err and "deleted dataset" not in err
    sets = service.get(f"/v1/datasets/{dataset['id']}/annotation-sets")["items"]
    assert [s["name"] for s in sets] == ["hc18/masks"]
    assert service.get(f"/v1/datasets/{dataset['id']}")["cases"] == 9


def test_submit_reattaches_to_an_audit_and_downloads_it(
    service, hc18, monkeypatch, capsys, tmp_path
):
    images, masks = hc18
    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    assert submit(capsys, service, "--images", images[0].parent, "--masks", masks[0].parent)[0] == 0
    [audit] = service.get("/v1/audits")["items"]
    with service.app.state.sessions() as session:
        lifecycle.claim_audit(session, audit["id"])
        outputs = engine_outputs(tmp_path / "engine", masks, [0.1 * i for i in range(9)])
        assert lifecycle.complete_audit(session, service.app.state.store, audit["id"], *outputs)

    out = tmp_path / "results"
    code, stdout, err = submit(capsys, service, "--audit", audit["id"], "--out", out)
    assert code == 0, err
    assert f"audit {audit['id']} succeeded: 9 cases" in stdout
    assert len(list((out / "cleansed").iterdir())) == 9
    assert (out / "scores.csv").read_text().count("\n") >= 10

    code, _, err = submit(capsys, service, "--audit", 999)
    assert code == 2 and "404" in err
    code, _, err = submit(capsys, service, "--audit", audit["id"], "--masks", masks[0].parent)
    assert code == 2 and "leave out --masks" in err


def test_default_names_say_which_data(tmp_path):
    assert default_name(tmp_path / "hc18" / "images") == "hc18/images"
    assert default_name(tmp_path / "Task01" / "labelsTr") == "Task01/labelsTr"
    assert default_name(tmp_path / "rater-b") == "rater-b"


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("segaudit ") and out.split()[1][0].isdigit()


def test_when_nothing_is_flagged_submit_and_the_api_say_why(
    service, hc18, monkeypatch, capsys, tmp_path
):
    images, masks = hc18
    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    assert submit(capsys, service, "--images", images[0].parent, "--masks", masks[0].parent)[0] == 0
    [audit] = service.get("/v1/audits")["items"]
    reason = (
        "no case looks more like the known-noisy copies than like the clean group (the noisy "
        "share fitted 0.0%; highest probability 0.12 < 0.5)"
    )
    with service.app.state.sessions() as session:
        lifecycle.claim_audit(session, audit["id"])
        out, results, run = engine_outputs(tmp_path / "engine", masks, [0.1] * 9)
        run["summary"] = {"filter_degenerate": True, "filter_reason": reason}
        store = service.app.state.store
        assert lifecycle.complete_audit(session, store, audit["id"], out, results, run)

    summary = service.get(f"/v1/audits/{audit['id']}")["summary"]
    assert summary["filter_degenerate"] is True and summary["filter_reason"] == reason
    code, stdout, err = submit(capsys, service, "--audit", audit["id"], "--out", tmp_path / "r")
    assert code == 0, err
    assert f"No case is flagged: {reason}." in stdout
