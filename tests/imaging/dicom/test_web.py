"""DICOMweb against a real Orthanc (with its DICOMweb plugin) on loopback: push a PACS export,
pull a study back for an audit, push the audit's cleansed SEGs, all through ``segaudit pacs``."""

from __future__ import annotations

import numpy as np
import pydicom

from cli.main import main as segaudit
from imaging.dicom import web
from imaging.dicom.cases import find_pairs
from tests.imaging.dicom.builders import write_cases


def test_push_a_study_and_pull_it_back(orthanc, _built, tmp_path, capsys):
    cases = [c for c in _built if c.patient_id == "BREAST1"]
    images, masks = write_cases(cases, tmp_path / "images", tmp_path / "masks")
    assert segaudit(["pacs", "push", "--url", orthanc, str(images), str(masks)]) == 0
    instances = sum(len(c.images) for c in cases) + len(cases)
    assert f"Pushed {instances} instances" in capsys.readouterr().out
    study = cases[0].images[0].StudyInstanceUID
    dest = tmp_path / "pulled"
    assert segaudit(["pacs", "pull", "--url", orthanc, "--study", study, "--out", str(dest)]) == 0
    assert f"Pulled {instances} instances of {2 * len(cases)} series" in capsys.readouterr().out
    assert not [p for p in dest.iterdir() if p.name.startswith(".")], "no staging left behind"
    pulled = {p.case_id: p for p in find_pairs(dest, dest)[0]}
    local = {p.case_id: p for p in find_pairs(images, masks)[0]}
    assert pulled.keys() == local.keys() == {c.name for c in cases}
    for name, pair in pulled.items():
        assert np.array_equal(pair.read_image().array, local[name].read_image().array)
        assert np.array_equal(pair.read_mask().array, local[name].read_mask().array)
    syntaxes = {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in dest.rglob("*.dcm")}
    assert len(syntaxes) > 2, "instances come back as stored, compressed ones too"


def test_cleansed_segs_of_an_audit_go_back_to_the_pacs(orthanc, seg_audit, _built, tmp_path):
    archive, out = seg_audit
    brain = [c for c in _built if c.patient_id == "BRAIN1"]  # the other test has BREAST1
    client = web.connect(orthanc)
    web.push(client, write_cases(brain, tmp_path / "images", tmp_path / "masks"))
    cleansed_brain = [str(out / "cleansed" / f"{c.name}.dcm") for c in brain]
    assert len(cleansed_brain) == len(brain)
    assert segaudit(["pacs", "push", "--url", orthanc, *cleansed_brain]) == 0
    case = brain[3]
    study = case.images[0].StudyInstanceUID
    cleansed = pydicom.dcmread(out / "cleansed" / f"{case.name}.dcm")
    assert cleansed.SeriesInstanceUID in web.series_of(client, study)
    dest = tmp_path / "back"
    series = [case.images[0].SeriesInstanceUID, cleansed.SeriesInstanceUID]
    web.pull(client, dest, study_uid=study, series_uids=series)
    (pair,) = find_pairs(dest, dest)[0]
    assert pair.mask.obj.sop_instance_uid == cleansed.SOPInstanceUID
    (local,) = [p for p in find_pairs(archive, out / "cleansed")[0] if p.case_id == pair.case_id]
    assert np.array_equal(pair.read_mask().array, local.read_mask().array)


def test_pacs_errors_are_clear(orthanc, tmp_path, capsys):
    rc = segaudit(
        ["pacs", "pull", "--url", orthanc, "--study", "1.2.3.4", "--out", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "[pacs_error]" in err and "study 1.2.3.4 holds no series" in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    rc = segaudit(["pacs", "push", "--url", "http://127.0.0.1:9/dicom-web", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "[empty_folder]" in err
    (tmp_path / "a.dcm").write_bytes(b"not dicom")
    rc = segaudit(["pacs", "push", "--url", orthanc, str(tmp_path / "a.dcm")])
    assert rc == 2 and "[unreadable_file]" in capsys.readouterr().err
    study = ["--study", "1.2.3", "--out", str(tmp_path / "y")]
    rc = segaudit(["pacs", "pull", "--url", "http://127.0.0.1:9/dicom-web", *study])
    err = capsys.readouterr().err
    assert rc == 2 and "the server cannot be reached" in err
