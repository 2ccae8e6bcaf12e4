"""What an audit's results carry through the API: why a case ranks where it does, the export of
everything the audit made, the case's image and the run's per-epoch history (no training: the
results are stored as a worker would store them).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.services import lifecycle
from bench.evaluate import read_scores
from imaging import layout
from tests.app.conftest import Api, engine_outputs, load_dataset, submit
from tests.conftest import mr_nifti_cases

MISSING = {
    **dict.fromkeys(("boundary_mean", "boundary_abs", "boundary_coherence"), 0.0),
    **dict.fromkeys(("centroid_shift", "boundary_p95"), 0.0),
    "missing_objects": 1.0,
    "missing_fraction": 0.3,
    "given_pixels": 100.0,
    "predicted_pixels": 140.0,
    "given_mm": 50.0,
    "predicted_mm": 70.0,
}
HISTORY = [
    {"epoch": 1, "phase": "warmup", "loss": 0.9, "flagged": 0, "seconds": 1.0},
    {"epoch": 2, "phase": "train", "loss": 0.5, "flagged": 1, "seconds": 1.1},
]


def finish(
    api: Api, images: list[Path], masks: list[Path], out: Path, **parameters: Any
) -> tuple[int, Any]:
    """An audit of ``masks`` stored with a run record that has versions and a history."""
    loaded = load_dataset(api, images, masks, name=out.name)
    audit_id = int(submit(api, loaded, **parameters)["id"])
    scores = [0.9, 0.2, 0.6, 0.1, 0.05, 0.3, 0.4, 0.15, 0.25][: len(masks)]
    folder, results, run = engine_outputs(out, masks, scores)
    # engine_outputs names a case by its file's stem ("x.nii" for "x.nii.gz"); one is missing
    # an object.
    results = [
        dataclasses.replace(
            r, case=r.case.removesuffix(".nii"), figures=MISSING if r.noise_score == 0.9 else {}
        )
        for r in results
    ]
    run = {
        **run,
        "versions": {"segaudit": "9.8.7", "torch": "2.13.0"},
        "inputs": {"images": "/worker/only/images", "masks": "/worker/only/masks", "cases": 9},
        "history": HISTORY,
    }
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        assert lifecycle.complete_audit(session, api.store, audit_id, folder, results, run)
    return audit_id, loaded


@pytest.fixture
def volumes(api, tmp_path):
    images, masks = (sorted(d.iterdir()) for d in mr_nifti_cases(tmp_path / "mr"))
    audit_id, loaded = finish(api, images, masks, tmp_path / "out", min_cases=4)
    return audit_id, loaded, images, masks, tmp_path / "out"


def test_the_summary_names_the_engine_version_but_not_the_run_record(api, volumes):
    audit_id, *_ = volumes
    summary = api.get(f"/v1/audits/{audit_id}").json()["summary"]
    assert summary["engine_version"] == "9.8.7" and summary["cases"] == 9
    assert "run" not in summary and "history" not in json.dumps(summary)


def test_results_say_why_and_where(api, volumes):
    audit_id, *_ = volumes
    page = api.get(f"/v1/audits/{audit_id}/cases").json()["items"]
    # engine_outputs' slices: slice z has a dice gap of 0.1 z, so the last slice is the worst.
    for row in page:
        detail = api.get(f"/v1/audits/{audit_id}/cases/{row['case']}").json()
        assert row["worst_slice"] == len(detail["slices"]) - 1
        if row["noise_score"] == 0.9:
            assert row["disagreement"] == "1 object missing"
            assert row["disagreement_kind"] == "missing_object"
            assert row["figures"]["given_mm"] == 50.0
        else:
            assert row["disagreement"] == row["disagreement_kind"] == ""  # no figures stored


def test_export_holds_what_the_audit_made(api, volumes):
    audit_id, _, _, masks, out = volumes
    response = api.get(f"/v1/audits/{audit_id}/export")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = set(zf.namelist())
        per_case = {
            f"{folder}/{m.name}"
            for m in masks
            for folder in (layout.CLEANSED, layout.PSEUDO, layout.ISSUE_MAPS)
        }
        assert names == {"scores.csv", "slices.csv", "run.json", "summary.json"} | per_case
        for name in per_case:
            assert zf.read(name) == (out / name).read_bytes(), name
        exported = list(csv.DictReader(io.StringIO(zf.read("scores.csv").decode())))
        slices = list(csv.DictReader(io.StringIO(zf.read("slices.csv").decode())))
        run = json.loads(zf.read("run.json"))
        summary = json.loads(zf.read("summary.json"))
    engine = read_scores(out / layout.SCORES)  # as the engine wrote it, but with these figures
    assert [r["case"] for r in exported] == [r["case"].removesuffix(".nii") for r in engine]
    first = exported[0]
    assert first["disagreement_kind"] == "missing_object" and first["given_pixels"] == "100"
    assert first["given_mm"] == "50.000000" and first["predicted_pixels"] == "140"
    assert len(slices) == sum(int(r["worst_slice"]) + 1 for r in exported)
    assert run["audit_id"] == audit_id and run["history"] == HISTORY
    assert run["inputs"] == {"cases": 9}  # never the worker's own folders
    assert summary["audit_id"] == audit_id and summary["engine_version"] == "9.8.7"
    assert summary["created_at"] and summary["finished_at"] and summary["flagged"] == 2


def test_the_case_image_comes_back_as_uploaded(api, volumes, hc18, tmp_path):
    audit_id, _, images, _, _ = volumes
    response = api.get(f"/v1/audits/{audit_id}/cases/brain1_z00/image")
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"
    assert response.content == images[0].read_bytes()
    assert 'filename="brain1_z00.nii.gz"' in response.headers["content-disposition"]
    assert api.get(f"/v1/audits/{audit_id}/cases/nobody/image").status_code == 404
    flat_id, _ = finish(api, *hc18, tmp_path / "flat")  # a PNG comes back as a PNG
    name = hc18[0][0].stem
    png = api.get(f"/v1/audits/{flat_id}/cases/{name}/image")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == hc18[0][0].read_bytes()


def test_the_run_history_is_served_once_the_audit_succeeded(api, volumes, hc18):
    audit_id, *_ = volumes
    assert api.get(f"/v1/audits/{audit_id}/history").json() == HISTORY
    waiting = submit(api, load_dataset(api, *hc18, name="waiting"))["id"]
    refused = api.get(f"/v1/audits/{waiting}/history")
    assert refused.status_code == 409 and refused.json()["code"] == "audit_not_finished"
    assert api.get("/v1/audits/999999/history").status_code == 404
