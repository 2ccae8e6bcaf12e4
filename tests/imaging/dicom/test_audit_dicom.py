"""End to end through the command line: a PACS-style zip of MR series with DICOM-SEG masks (and
a folder of series with RTSTRUCTs) is audited, and the cleansed masks come back in the masks'
format on the same frames; every malformed export stops with one clear error and no output."""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from bench.evaluate import read_scores
from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.errors import ErrorCode
from tests.imaging.dicom.builders import pacs_export, rtstruct_for, save, write_cases
from tests.imaging.dicom.conftest import audit, dciodvfy_errors


def segment_frames(ds: pydicom.Dataset) -> dict[tuple[str, int], np.ndarray]:
    """(source SOP instance, segment number) -> frame, read with highdicom's decoder."""
    seg = hd.seg.Segmentation.from_dataset(ds)
    shared = seg.SharedFunctionalGroupsSequence[0]
    found = {}
    for index, f in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ident = f.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        source = f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        found[(source, int(ident[0].ReferencedSegmentNumber))] = seg.get_stored_frame(index + 1)
    return found


def test_pacs_zip_is_audited_into_segs(seg_audit, _built):
    archive, out = seg_audit
    names = {c.name for c in _built}
    rows = read_scores(out / layout.SCORES)
    assert {r["case"] for r in rows} == names
    for folder in (layout.CLEANSED, layout.PSEUDO):
        assert {p.name for p in (out / folder).iterdir()} == {f"{n}.dcm" for n in names}
    assert {p.name for p in (out / layout.ISSUE_MAPS).iterdir()} == {f"{n}.nii.gz" for n in names}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cleansed_segs_are_valid_and_on_the_same_frames(seg_audit, _built):
    archive, out = seg_audit
    flagged = {r["case"]: r["flagged"] == "1" for r in read_scores(out / layout.SCORES)}
    assert not all(flagged.values()), "some cases must keep their given mask to compare"
    for case in _built:
        name = case.name
        path = out / layout.CLEANSED / f"{name}.dcm"
        assert dciodvfy_errors(path) == [], name
        ds = pydicom.dcmread(path)
        seg = hd.seg.segread(path)  # opens with highdicom too
        assert (
            seg.Manufacturer == "segaudit" and ds.SeriesInstanceUID != case.mask.SeriesInstanceUID
        )
        given = case.mask
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == case.images[0].SeriesInstanceUID
        listed = {
            i.ReferencedSOPInstanceUID
            for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        }
        assert listed == {i.SOPInstanceUID for i in case.images}
        if not flagged[name]:  # nothing changed: voxel for voxel the given SEG, frame by frame
            mine, theirs = segment_frames(ds), segment_frames(given)
            assert mine.keys() == theirs.keys(), name
            for key, frame in theirs.items():
                assert np.array_equal(mine[key], frame), (name, key)


def test_issue_maps_lie_on_the_series(seg_audit):
    archive, out = seg_audit
    pairs = {p.case_id: p for p in find_pairs(archive, archive)[0]}
    for path in (out / layout.ISSUE_MAPS).iterdir():
        pair = pairs[path.name[: -len(".nii.gz")]]
        img = nib.load(path)
        assert img.shape == pair.series.shape
        assert np.allclose(np.diag([-1, -1, 1, 1]) @ img.affine, pair.series.affine)


def test_rtstruct_masks_come_back_as_rtstructs(_built, tmp_path):
    cases = copy.deepcopy([c for i, c in enumerate(_built) if i != 6])  # single-frame series
    for case in cases:
        case.mask = rtstruct_for(case.images, case.labels, case.affine, ("GTV",))
    images, masks = write_cases(cases, tmp_path / "images", tmp_path / "masks")
    out = tmp_path / "out"
    assert audit(images, masks, out) == 0
    flagged = {r["case"]: r["flagged"] == "1" for r in read_scores(out / layout.SCORES)}
    assert not all(flagged.values())
    given = {p.case_id: p.read_mask().array for p in find_pairs(images, masks)[0]}
    written = find_pairs(images, out / layout.CLEANSED)[0]
    assert {p.case_id for p in written} == set(given) and len(given) == 8
    for pair in written:
        path = out / layout.CLEANSED / f"{pair.case_id}.dcm"
        assert pair.mask.obj.source.path == path
        assert pydicom.dcmread(path).Modality == "RTSTRUCT"
        assert dciodvfy_errors(path) == []
        if not flagged[pair.case_id]:
            assert np.array_equal(pair.read_mask().array, given[pair.case_id])


# Malformed exports: each is one clear error, exit status 2 and nothing in --out.


def expect_error(capsys, images: Path, masks: Path, out: Path, code: str, *fragments: str):
    rc = audit(images, masks, out)
    err = capsys.readouterr().err
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"segaudit: error [{code}]"), err
    for fragment in fragments:
        assert fragment in last, last
    assert err.count("Traceback") == 0
    assert not out.exists() or not any(out.iterdir()), "nothing may be written for bad input"


def export_folder(tmp_path: Path, built) -> Path:
    return pacs_export(tmp_path, built, as_zip=False)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_truncated_image(tmp_path, built, capsys):
    folder = export_folder(tmp_path, built)
    victim = folder / "BRAIN1" / "STUDY1" / "SER003" / "IM00002"
    victim.write_bytes(victim.read_bytes()[:-3000])  # cut inside the pixel data
    expect_error(
        capsys, folder, folder, tmp_path / "out", ErrorCode.UNREADABLE, "IM00002", "pixel data"
    )


def test_truncated_image_in_a_zip(tmp_path, built, capsys):
    folder = export_folder(tmp_path, built)
    victim = folder / "BREAST1" / "STUDY1" / "SER003" / "IM00001"
    victim.write_bytes(victim.read_bytes()[:600])  # cut inside the header
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(tmp_path))
    expect_error(
        capsys, archive, archive, tmp_path / "out", ErrorCode.UNREADABLE, "export.zip/EXPORT/"
    )


def test_seg_of_a_missing_series(tmp_path, built, capsys):
    folder = export_folder(tmp_path, built)
    gone = built[4].images[0].SeriesInstanceUID
    for path in (folder / "BRAIN1" / "STUDY1" / "SER005").iterdir():
        path.unlink()
    expect_error(
        capsys, folder, folder, tmp_path / "out", ErrorCode.MISSING_IMAGE, "seg_04.dcm", gone
    )


def test_seg_on_a_different_grid(tmp_path, built, capsys):
    case = built[7]
    for f in case.mask.PerFrameFunctionalGroupsSequence:
        position = f.PlanePositionSequence[0]
        x, y, z = (float(v) for v in position.ImagePositionPatient)
        position.ImagePositionPatient = [x + 1.5, y + 1.5, z]  # 2.12 mm aside, in its plane
    folder = export_folder(tmp_path, built)
    expect_error(
        capsys,
        folder,
        folder,
        tmp_path / "out",
        ErrorCode.GEOMETRY_MISMATCH,
        f"case '{case.name}'",
        "SEG seg_07.dcm",
        "2.12 mm from the nearest slice of series 3",
    )


def test_mixed_series_under_one_uid(tmp_path, built, capsys):
    intruder = copy.deepcopy(built[7].images[0])  # a breast slice ...
    intruder.SeriesInstanceUID = built[2].images[0].SeriesInstanceUID  # ... in a brain series
    intruder.StudyInstanceUID = built[2].images[0].StudyInstanceUID
    intruder.FrameOfReferenceUID = built[2].images[0].FrameOfReferenceUID
    intruder.SOPInstanceUID = intruder.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())
    folder = export_folder(tmp_path, built)
    save(intruder, folder / "BRAIN1" / "STUDY1" / "SER003" / "IM99999")
    expect_error(
        capsys,
        folder,
        folder,
        tmp_path / "out",
        ErrorCode.SERIES_INCONSISTENT,
        "series 3",
        "mixes images of 120x45 and 256x256 pixels",
    )
