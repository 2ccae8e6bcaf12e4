"""A DICOM dataset resolved: the audit's cleansed masks are SEGs written by the engine's own
writer on each series (results seeded, no training); the resolved set's export holds SEGs that
highdicom opens, that reference their series, and that read back on those series voxel for
voxel as the decisions say; and that dciodvfy passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from sqlalchemy import select

from app.db.tables import AnnotationSet
from app.services import lifecycle
from imaging import layout
from imaging.dicom import web
from imaging.dicom.cases import find_pairs
from imaging.write import write_array
from models.results import CaseResult
from tests.app.conftest import Loaded, load_dataset, submit
from tests.app.dicom_data import masks_url, new_dataset, new_set
from tests.app.review_data import SCORES, assert_unchanged, correct, decide, snapshot, unzip
from tests.imaging.dicom.builders import pacs_export
from tests.imaging.dicom.conftest import dciodvfy_errors, require_tool


def _resolved_export(api, built, tmp_path: Path):
    """Upload, seed the audit's results, decide, resolve (keep_original) and export; returns
    the PACS export, the exported SEGs' folder, the masks each case must read back as, and the
    audit's id.
    """
    archive = pacs_export(tmp_path / "export", built)
    dataset_id = new_dataset(api)
    assert api.upload(f"/v1/datasets/{dataset_id}/images", [archive]).status_code == 201
    set_id = new_set(api, dataset_id)
    assert api.upload(masks_url(dataset_id, set_id), [archive]).status_code == 201
    audit_id = submit(api, Loaded(dataset_id, set_id, {}))["id"]

    out = tmp_path / "out"
    given, cleansed, results = {}, {}, []
    for score, pair in zip(
        SCORES, sorted(find_pairs(archive, archive)[0], key=lambda p: p.case_id), strict=True
    ):
        mask = pair.read_mask()
        labels = mask.array.copy()
        rows = np.nonzero(labels)[0]
        if rows.size:
            labels[int(np.median(rows)) :] = 0
        path = Path(layout.CLEANSED) / f"{pair.case_id}.dcm"
        write_array(out / path, labels, mask.geometry, kind=layout.CLEANSED)
        given[pair.case_id], cleansed[pair.case_id] = mask.array, labels
        results.append(
            CaseResult(
                case=pair.case_id,
                noise_score=score,
                flagged=score > 0.5,
                ce=score,
                dice_gap=score / 2,
                dice=(1 - score / 2,),
                changed_fraction=0.1,
                issue_fraction=0.1,
                cleansed=path,
            )
        )
    results.sort(key=CaseResult.sort_key)
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        run = {"timings": {}, "summary": {"filter_degenerate": False, "filter_reason": ""}}
        assert lifecycle.complete_audit(session, api.store, audit_id, out, results, run)

    names = sorted(given)
    accepted = next(n for n in names if not np.array_equal(given[n], cleansed[n]))
    decide(api, audit_id, accepted, "accept_cleansed")
    want = {n: cleansed[n] if n == accepted else given[n] for n in names}
    made = api.post(
        f"/v1/audits/{audit_id}/resolve", role="reviewer", json={"policy": "keep_original"}
    )
    assert made.status_code == 201, made.text
    members, manifest = unzip(
        api.get(f"/v1/datasets/{dataset_id}/annotation-sets/{made.json()['id']}/export")
    )
    assert {r["case"]: r["source"] for r in manifest} == {
        n: "cleansed" if n == accepted else "original" for n in names
    }
    folder = tmp_path / "final"
    folder.mkdir()
    for row in manifest:
        assert row["file"] == f"labels/final/{row['case']}.dcm"
        (folder / f"{row['case']}.dcm").write_bytes(members[row["file"]])
    return archive, folder, want, audit_id


def test_a_resolved_dicom_set_reads_back_on_its_series(api, _built, tmp_path):
    archive, folder, want, audit_id = _resolved_export(api, _built, tmp_path)
    series = {c.name: c for c in _built}
    for path in sorted(folder.iterdir()):
        seg = hd.seg.segread(path)
        case = series[path.name.removesuffix(".dcm")]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == case.images[0].SeriesInstanceUID
    back = find_pairs(archive, folder)[0]
    assert {p.case_id for p in back} == set(want)
    for pair in back:
        assert np.array_equal(pair.read_mask().array, want[pair.case_id]), pair.case_id

    # Corrected DICOM masks are refused for now, with the reason, and nothing kept.
    before = snapshot(api)
    name = sorted(want)[0]
    refused = correct(api, audit_id, name, f"{name}.dcm", (folder / f"{name}.dcm").read_bytes())
    assert refused.status_code == 422 and refused.json()["code"] == "unsupported_format"
    assert "DICOM" in refused.json()["detail"]
    assert_unchanged(api, before)


def test_a_resolved_seg_passes_dciodvfy(api, _built, tmp_path):
    require_tool("dciodvfy")
    _, folder, _, _ = _resolved_export(api, _built, tmp_path)
    for path in sorted(folder.iterdir()):
        assert dciodvfy_errors(path) == [], path.name
    shutil.rmtree(folder)


def test_a_resolved_set_pushed_to_a_pacs(api_factory, orthanc, _built, tmp_path):
    api = api_factory(dicomweb_servers=[orthanc])
    _, folder, want, _ = _resolved_export(api, _built, tmp_path)
    with api.sessions() as session:
        set_id = session.scalar(select(AnnotationSet.id).where(AnnotationSet.tag == "final"))
        dataset_id = session.scalar(
            select(AnnotationSet.dataset_id).where(AnnotationSet.id == set_id)
        )
    push = f"/v1/datasets/{dataset_id}/annotation-sets/{set_id}/dicomweb/push"
    for role, status in (("annotator", 403), ("other", 404)):
        assert api.post(push, role=role, json={"url": orthanc}).status_code == status
    pushed = api.post(push, role="reviewer", json={"url": orthanc})
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["cases"] == sorted(want)
    client = web.connect(orthanc)
    for name in sorted(want):
        mine = pydicom.dcmread(folder / f"{name}.dcm")
        assert mine.SOPInstanceUID in pushed.json()["instances"]
        stored = client.retrieve_instance(
            mine.StudyInstanceUID, mine.SeriesInstanceUID, mine.SOPInstanceUID
        )
        assert stored.Modality == "SEG" and stored.PixelData == mine.PixelData
    unknown = api.post(push, role="reviewer", json={"url": orthanc, "cases": ["nobody"]})
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]


def test_png_sets_are_not_pushed(api_factory, hc18):
    api = api_factory(dicomweb_servers=["http://127.0.0.1:9/dicom-web"])
    loaded = load_dataset(api, *hc18)
    push = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}/dicomweb/push"
    refused = api.post(push, role="reviewer", json={"url": "http://127.0.0.1:9/dicom-web"})
    assert refused.status_code == 422 and refused.json()["code"] == "unsupported_format"
    assert "annotation-sets" in refused.json()["detail"]  # it says where to download them
