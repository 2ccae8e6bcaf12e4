"""DICOMweb through the API against a real Orthanc on loopback: pull a study into a dataset,
and every way a pull or a push is refused (server not allowed, PACS errors, roles) with
nothing left behind.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import Forbidden
from app.services import lifecycle
from app.services.dicomweb import check_server
from app.settings import Settings
from imaging.dicom import web
from imaging.dicom.source import scan
from tests.app.conftest import engine_outputs, load_dataset, submit
from tests.app.dicom_data import (
    assert_unchanged,
    case_name,
    export_zip,
    masks_url,
    new_dataset,
    new_set,
    post_files,
    snapshot,
)
from tests.imaging.dicom.builders import group_series, write_cases


@pytest.fixture(scope="session")
def breast_study(orthanc, _built, tmp_path_factory):
    """BREAST1's four series and their SEGs, stored in Orthanc once; (study UID, cases)."""
    cases = [c for c in _built if c.patient_id == "BREAST1"]
    root = tmp_path_factory.mktemp("breast")
    images, masks = write_cases(cases, root / "images", root / "masks")
    web.push(web.connect(orthanc), [images, masks])
    return str(cases[0].images[0].StudyInstanceUID), cases


def pull_url(dataset_id: int) -> str:
    return f"/v1/datasets/{dataset_id}/dicomweb/pull"


def volumes(api, cases_out) -> dict[str, np.ndarray]:
    """Each case's stored series, read back by the engine's reader."""
    found = {}
    for case in cases_out:
        (series,) = group_series(scan(api.store.path(case["image"]["sha256"])).objects)[0].values()
        found[case["name"]] = series.read()
    return found


def test_pull_a_study_into_a_dataset(api_factory, orthanc, breast_study, tmp_path):
    api = api_factory(dicomweb_servers=[orthanc])
    study, cases = breast_study
    dataset_id = new_dataset(api)
    response = api.post(pull_url(dataset_id), json={"url": orthanc, "study_uid": study})
    assert response.status_code == 201, response.text
    body = response.json()
    assert {c["name"] for c in body["cases"]} == {case_name(c) for c in cases}
    assert any("SEG (not an image)" in n for n in body["notes"])

    # The same series as an uploaded export of them: same geometry, same voxels.
    uploaded = new_dataset(api, "uploaded")
    export = {"export.zip": export_zip(tmp_path, cases)}
    local = post_files(api, f"/v1/datasets/{uploaded}/images", export).json()["cases"]
    by_name = {c["name"]: c for c in local}
    for case in body["cases"]:
        twin = by_name[case["name"]]
        assert case["shape"] == twin["shape"] and np.allclose(case["spacing"], twin["spacing"])
    pulled, read = volumes(api, body["cases"]), volumes(api, local)
    assert all(np.array_equal(pulled[n], read[n]) for n in pulled)

    # Their SEGs match the pulled cases, and the same study again is refused.
    set_id = new_set(api, dataset_id)
    masks = api.upload_bytes(masks_url(dataset_id, set_id), "export.zip", export["export.zip"])
    assert masks.status_code == 201 and masks.json()["count"] == len(cases)
    before = snapshot(api)
    again = api.post(pull_url(dataset_id), json={"url": orthanc, "study_uid": study})
    assert again.status_code == 409 and again.json()["code"] == "case_exists"
    assert_unchanged(api, before)


def test_pull_some_series(api_factory, orthanc, breast_study):
    api = api_factory(dicomweb_servers=[f"{orthanc}/"])  # a trailing slash is the same root
    study, cases = breast_study
    dataset_id = new_dataset(api)
    wanted = str(cases[2].images[0].SeriesInstanceUID)
    body = {"url": orthanc, "study_uid": study, "series_uids": [wanted]}
    response = api.post(pull_url(dataset_id), json=body)
    assert response.status_code == 201, response.text
    assert [c["name"] for c in response.json()["cases"]] == [case_name(cases[2])]
    assert response.json()["notes"] == []


def test_servers_not_allowed(api_factory, orthanc, breast_study):
    study, _ = breast_study
    closed = api_factory()  # the default: no DICOMweb server at all
    dataset_id = new_dataset(closed)
    before = snapshot(closed)
    response = closed.post(pull_url(dataset_id), json={"url": orthanc, "study_uid": study})
    assert response.status_code == 403 and response.json()["code"] == "server_not_allowed"
    assert "SEGAUDIT_DICOMWEB_SERVERS" in response.json()["detail"]
    api = api_factory(dicomweb_servers=[orthanc])
    for url in (
        orthanc.replace("/dicom-web", "/dicom-web-other"),  # a sibling path
        orthanc.replace("127.0.0.1", "localhost"),  # another host name
        orthanc.replace("http://", "https://"),
    ):
        refused = api.post(pull_url(dataset_id), json={"url": url, "study_uid": study})
        assert refused.status_code == 403, (url, refused.text)
    for url in (
        orthanc.replace("http://", "http://user:secret@"),
        f"{orthanc}/../../tools",
        "ftp://127.0.0.1/dicom-web",
    ):
        refused = api.post(pull_url(dataset_id), json={"url": url, "study_uid": study})
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", url
    assert_unchanged(api, before)


def test_pacs_errors_are_502(api_factory, orthanc, breast_study):
    api = api_factory(dicomweb_servers=["*"])
    study, _ = breast_study
    dataset_id = new_dataset(api)
    before = snapshot(api)
    for body, fragment in (
        ({"url": orthanc, "study_uid": "1.2.3.4"}, "study 1.2.3.4 holds no series"),
        (
            {"url": orthanc, "study_uid": study, "series_uids": ["1.2.3.4.5"]},
            "retrieving series 1.2.3.4.5 at",
        ),
        (
            {"url": "http://127.0.0.1:9/dicom-web", "study_uid": study},
            "the server cannot be reached",
        ),
    ):
        response = api.post(pull_url(dataset_id), json=body)
        assert response.status_code == 502, response.text
        assert response.json()["code"] == "pacs_error"
        assert fragment in response.json()["detail"]
    assert_unchanged(api, before)


def test_pull_needs_an_annotator_and_a_uid(api_factory, orthanc, breast_study):
    api = api_factory(dicomweb_servers=[orthanc])
    study, _ = breast_study
    dataset_id = new_dataset(api)
    body = {"url": orthanc, "study_uid": study}
    viewer = api.post(pull_url(dataset_id), role="viewer", json=body)
    assert viewer.status_code == 403 and viewer.json()["code"] == "forbidden"
    other = api.post(pull_url(dataset_id), role="other", json=body)
    assert other.status_code == 404
    bad = api.post(pull_url(dataset_id), json={**body, "study_uid": "1.2.abc"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    assert api.get(f"/v1/datasets/{dataset_id}").json()["cases"] == 0


def test_push_refusals(api_factory, orthanc, hc18, tmp_path):
    api = api_factory(dicomweb_servers=[orthanc])
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    audit_id = submit(api, loaded)["id"]
    url = f"/v1/audits/{audit_id}/dicomweb/push"
    body = {"url": orthanc}
    queued = api.post(url, role="reviewer", json=body)
    assert queued.status_code == 409 and queued.json()["code"] == "audit_not_finished"
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        out = engine_outputs(tmp_path / "out", masks, [0.1 * i for i in range(len(masks))])
        assert lifecycle.complete_audit(session, api.store, audit_id, *out)
    annotator = api.post(url, role="annotator", json=body)
    assert annotator.status_code == 403 and annotator.json()["code"] == "forbidden"
    pngs = api.post(url, role="reviewer", json=body)  # hc18's masks are PNGs, not DICOM
    assert pngs.status_code == 422 and pngs.json()["code"] == "unsupported_format"
    unknown = api.post(url, role="reviewer", json={**body, "cases": ["nobody"]})
    assert unknown.status_code == 404 and "'nobody'" in unknown.json()["detail"]


def test_the_allowed_servers_setting(monkeypatch):
    monkeypatch.setenv("SEGAUDIT_DICOMWEB_SERVERS", "http://pacs:8042/dicom-web, https://b.example")
    allowed = Settings().dicomweb_servers
    assert allowed == ["http://pacs:8042/dicom-web", "https://b.example"]
    check_server("http://PACS:8042/dicom-web/", allowed)  # host case and a trailing slash
    check_server("https://b.example:443/anything/below", allowed)  # the default port
    with pytest.raises(Forbidden):
        check_server("http://pacs:8043/dicom-web", allowed)
    monkeypatch.delenv("SEGAUDIT_DICOMWEB_SERVERS")
    assert Settings().dicomweb_servers == []


def test_push_pull_and_re_audit_round_trips(api_factory, orthanc, breast_study, tmp_path):
    """segaudit's cleansed SEGs, pushed beside the originals, are left out when the study comes
    back as masks: no duplicate_case, and the re-audit is accepted.
    """
    from imaging import layout
    from imaging.dicom.cases import find_pairs
    from imaging.write import write_array
    from tests.app.conftest import zip_of

    api = api_factory(dicomweb_servers=[orthanc])
    study, cases = breast_study
    pairs, _ = find_pairs(*write_cases(cases, tmp_path / "images", tmp_path / "masks"))
    ours = tmp_path / "ours"
    for pair in pairs:
        mask = pair.read_mask()
        cleansed = np.where(np.arange(mask.array.shape[0])[:, None, None] < 2, 0, mask.array)
        write_array(ours / f"{pair.case_id}.dcm", cleansed, mask.geometry, kind=layout.CLEANSED)
    assert len(web.push(web.connect(orthanc), [ours])) == len(cases)

    dataset_id = new_dataset(api, "round-trip")
    pulled = api.post(pull_url(dataset_id), json={"url": orthanc, "study_uid": study})
    assert pulled.status_code == 201 and pulled.json()["count"] == len(cases), pulled.text
    # The study as the PACS holds it now: each series with its original SEG and segaudit's.
    files = web.pull(web.connect(orthanc), tmp_path / "study", study_uid=study)
    held = [f for f in files if scan(f).objects[0].made_by_segaudit]
    assert len(held) >= len(cases)
    set_id = new_set(api, dataset_id)
    study_zip = zip_of(sorted(files))
    masks = api.upload_bytes(masks_url(dataset_id, set_id), "study.zip", study_zip)
    assert masks.status_code == 201, masks.text
    assert masks.json()["count"] == len(cases)
    assert any("segaudit wrote" in n for n in masks.json()["notes"]), masks.json()["notes"]
    audit = api.post(
        "/v1/audits",
        json={
            "dataset_id": dataset_id,
            "annotation_set_id": set_id,
            "parameters": {"min_cases": 4},
        },
    )
    assert audit.status_code == 202, audit.text
