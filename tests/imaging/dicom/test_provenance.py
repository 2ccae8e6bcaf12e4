"""What segaudit's SEG and RTSTRUCT outputs say about how they were made and when: the
algorithm type and name of each segment or ROI, a series date and time, and a description that
tells one run's series from another's. Every object still passes dciodvfy.
"""

from __future__ import annotations

import datetime as dt

import highdicom as hd
import pydicom
import pytest

import imaging
from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.dicom.export import build_rtstruct
from imaging.write import write_array
from tests.imaging.dicom.builders import write_cases
from tests.imaging.dicom.conftest import dciodvfy_errors
from tests.imaging.dicom.test_rtstruct import rt_cases


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [(layout.PSEUDO, "AUTOMATIC"), (layout.CLEANSED, "SEMIAUTOMATIC")],
)
def test_a_seg_says_it_is_segaudit_s_and_when(tmp_path, built, kind, algorithm):
    case = built[3]
    assert case.mask.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # as drawn
    (pair,) = find_pairs(*write_cases([case], tmp_path / "images", tmp_path / "masks"))[0]
    given = pair.read_mask()
    before = dt.datetime.now().replace(microsecond=0)
    path = tmp_path / kind / f"{pair.case_id}.dcm"
    write_array(path, given.array, given.geometry, kind=kind)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    for segment in ds.SegmentSequence:
        assert segment.SegmentAlgorithmType == algorithm
        assert segment.SegmentAlgorithmName == "segaudit"
        [identification] = segment.SegmentationAlgorithmIdentificationSequence
        assert identification.AlgorithmName == "segaudit"
        assert identification.AlgorithmVersion == imaging.__version__
    made = dt.datetime.strptime(ds.SeriesDate + ds.SeriesTime[:6], "%Y%m%d%H%M%S")
    assert before <= made <= dt.datetime.now()
    assert f"{made:%Y-%m-%d %H:%M}" in ds.SeriesDescription
    assert ds.SeriesDescription.startswith("segaudit")
    assert "audit" not in ds.SeriesDescription.removeprefix("segaudit")  # stand-alone: no id
    # highdicom reads the description back as a typed one.
    seg = hd.seg.segread(path)
    assert seg.get_segment_description(1).algorithm_type.value == algorithm


def test_an_rtstruct_says_how_its_rois_were_made(tmp_path, built):
    (case,) = rt_cases(built, picks=(3,))
    (pair,) = find_pairs(*write_cases([case], tmp_path / "i", tmp_path / "m"))[0]
    given = pair.read_mask().array
    path = tmp_path / "out" / "rt.dcm"
    path.parent.mkdir()
    build_rtstruct(given, pair.mask, kind=layout.PSEUDO).save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert [r.ROIGenerationAlgorithm for r in ds.StructureSetROISequence] == ["AUTOMATIC"] * 2
    assert all(
        r.ROIGenerationDescription.startswith("segaudit") for r in ds.StructureSetROISequence
    )
    assert ds.SeriesDate == ds.InstanceCreationDate and ds.SeriesTime == ds.InstanceCreationTime
    assert ds.SeriesDescription.startswith("segaudit pseudo label 20")


def test_the_description_names_the_service_s_audit(tmp_path, built):
    """Two audits' SEGs of one series, made in the same minute, differ by their audit."""
    (pair,) = find_pairs(*write_cases([built[3]], tmp_path / "images", tmp_path / "masks"))[0]
    given = pair.read_mask()
    texts = []
    for audit_id in (41, 1234567):
        path = tmp_path / str(audit_id) / f"{pair.case_id}.dcm"
        write_array(path, given.array, given.geometry, kind=layout.CLEANSED, audit_id=audit_id)
        assert dciodvfy_errors(path) == []
        texts.append(str(pydicom.dcmread(path).SeriesDescription))
    assert texts[0].startswith("segaudit cleansed audit 41 20") and len(texts[0]) <= 64
    assert texts[1].startswith("segaudit cleansed audit 1234567 20")
    (rt,) = rt_cases(built, picks=(3,))
    (rt_pair,) = find_pairs(*write_cases([rt], tmp_path / "ri", tmp_path / "rm"))[0]
    ds = build_rtstruct(rt_pair.read_mask().array, rt_pair.mask, kind=layout.PSEUDO, audit_id=7)
    assert ds.SeriesDescription.startswith("segaudit pseudo label audit 7 20")
