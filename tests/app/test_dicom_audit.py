"""End to end through the API: a PACS-style zip of MR series with DICOM-SEG masks is uploaded,
audited the way a worker runs an audit (``worker.pipeline.run_audit_job``: claim, stage the
inputs, ``run_audit`` with the tiniest network, store the results), and its cleansed masks come
back over HTTP as DICOM-SEG on the series' frames, then go to a real Orthanc over DICOMweb.
"""

from __future__ import annotations

import io
import zipfile

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom

from imaging.dicom import web
from imaging.dicom.cases import find_pairs
from tests.app.dicom_data import case_name, masks_url, new_dataset, new_set
from tests.imaging.dicom.builders import pacs_export
from worker.pipeline import Outcome, run_audit_job

TINY = {"size": 32, "epochs": 2, "seed": 0}


def test_a_pacs_export_audited_through_the_api(api_factory, orthanc, _built, tmp_path):
    api = api_factory(dicomweb_servers=[orthanc], device="cpu")
    archive = pacs_export(tmp_path / "export", _built)
    dataset_id = new_dataset(api)
    assert api.upload(f"/v1/datasets/{dataset_id}/images", [archive]).status_code == 201
    set_id = new_set(api, dataset_id)
    assert api.upload(masks_url(dataset_id, set_id), [archive]).status_code == 201
    submitted = api.post(
        "/v1/audits",
        json={"dataset_id": dataset_id, "annotation_set_id": set_id, "parameters": TINY},
    )
    assert submitted.status_code == 202, submitted.text
    audit_id = submitted.json()["id"]
    push = f"/v1/audits/{audit_id}/dicomweb/push"
    early = api.post(push, role="reviewer", json={"url": orthanc})
    assert early.status_code == 409 and early.json()["code"] == "audit_not_finished"

    outcome = run_audit_job(audit_id, sessions=api.sessions, store=api.store, settings=api.settings)
    audit = api.get(f"/v1/audits/{audit_id}").json()
    assert outcome == Outcome.succeeded, audit["error"]
    assert audit["status"] == "succeeded" and audit["summary"]["cases"] == len(_built)
    rows = api.get(f"/v1/audits/{audit_id}/cases").json()["items"]
    flagged = {r["case"]: r["flagged"] for r in rows}
    assert set(flagged) == {case_name(c) for c in _built}
    assert not all(flagged.values()), "some cases must keep their given mask to compare"

    # Each cleansed SEG downloads as DICOM, opens with highdicom, references its series.
    downloaded = tmp_path / "cleansed"
    downloaded.mkdir()
    for case in _built:
        base = f"/v1/audits/{audit_id}/cases/{case_name(case)}"
        response = api.get(f"{base}/cleansed-mask")
        assert (
            response.status_code == 200 and response.headers["content-type"] == "application/dicom"
        )
        assert f"{case_name(case)}.dcm" in response.headers["content-disposition"]
        path = downloaded / f"{case_name(case)}.dcm"
        path.write_bytes(response.content)
        seg = hd.seg.segread(path)
        assert seg.SeriesDescription.startswith(f"segaudit cleansed audit {audit_id} ")
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == case.images[0].SeriesInstanceUID
        listed = {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence}
        assert listed == {ds.SOPInstanceUID for ds in case.images}
        issues = api.get(f"{base}/issue-map")
        assert issues.status_code == 200 and issues.headers["content-type"] == "application/gzip"
        assert f"{case_name(case)}.nii.gz" in issues.headers["content-disposition"]
        (tmp_path / "issue.nii.gz").write_bytes(issues.content)
        assert nib.load(tmp_path / "issue.nii.gz").shape == case.labels.shape

    # On the same frames: read back on each series, voxel for voxel the given mask where the
    # audit changed nothing (a frame off its slice would be refused here).
    given = {p.case_id: p.read_mask().array for p in find_pairs(archive, archive)[0]}
    back = find_pairs(archive, downloaded)[0]
    assert {p.case_id for p in back} == set(given)
    for pair in back:
        assert pair.mask_path == downloaded / f"{pair.case_id}.dcm"
        cleansed = pair.read_mask().array
        assert cleansed.shape == given[pair.case_id].shape
        if not flagged[pair.case_id]:
            assert np.array_equal(cleansed, given[pair.case_id]), pair.case_id

    export = api.get(f"/v1/audits/{audit_id}/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        names = set(zf.namelist())
        assert {"scores.csv", "run.json", "summary.json"} <= names
        assert {f"cleansed/{case_name(c)}.dcm" for c in _built} <= names
        assert {f"pseudo_labels/{case_name(c)}.dcm" for c in _built} <= names

    # The run's per-epoch history (a real run of two epochs) and a case's image, its series zip.
    history = api.get(f"/v1/audits/{audit_id}/history").json()
    assert [h["epoch"] for h in history] == [1, 2] and all(h["loss"] > 0 for h in history)
    name = case_name(_built[0])
    image = api.get(f"/v1/audits/{audit_id}/cases/{name}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(image.content)) as zf:
        assert len(zf.namelist()) == len(_built[0].images)

    # Back to the PACS (a reviewer's decision), and found there.
    annotator = api.post(push, role="annotator", json={"url": orthanc})
    assert annotator.status_code == 403
    first, *others = sorted(flagged)
    one = api.post(push, role="reviewer", json={"url": orthanc, "cases": [first]})
    assert one.status_code == 200, one.text
    mine = pydicom.dcmread(downloaded / f"{first}.dcm")
    assert one.json()["cases"] == [first] and one.json()["instances"] == [mine.SOPInstanceUID]
    rest = api.post(push, role="reviewer", json={"url": orthanc, "cases": others})
    assert rest.status_code == 200 and len(rest.json()["instances"]) == len(others)
    stored = web.connect(orthanc).retrieve_instance(
        mine.StudyInstanceUID, mine.SeriesInstanceUID, mine.SOPInstanceUID
    )
    assert stored.Modality == "SEG" and stored.PixelData == mine.PixelData
