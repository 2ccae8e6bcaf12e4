"""Declared class names in the SEG and RTSTRUCT objects segaudit writes, read back with highdicom
and pydicom; without names the input's own labels stay.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom

from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.write import write_array
from tests.imaging.dicom.builders import TISSUE, TUMOUR, save, seg_for, write_cases
from tests.imaging.dicom.conftest import dciodvfy_errors
from tests.imaging.dicom.test_rtstruct import rt_cases


def test_a_written_seg_carries_the_declared_names(tmp_path, built):
    case = built[3]
    case.mask = seg_for(case.images, case.labels, case.affine, kinds=(TUMOUR, TISSUE))
    (pair,) = find_pairs(*write_cases([case], tmp_path / "images", tmp_path / "masks"))[0]
    assert pair.mask.class_names() == {"Tumour": 1, "Tissue": 2}  # inferred from the labels
    given = pair.read_mask()
    cleansed = given.array.copy()
    cleansed[25:28, 40:42, 2] = 2
    path = tmp_path / "out" / "cleansed" / "x.dcm"
    names = {1: "lesion", 2: "brain"}
    write_array(path, cleansed, given.geometry, kind=layout.CLEANSED, class_names=names)
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    described = {d.segment_number: d.segment_label for d in seg.SegmentSequence}
    assert described == {1: "lesion", 2: "brain"}
    assert [s.SegmentDescription for s in pydicom.dcmread(path).SegmentSequence] == [
        "lesion (class 1)",
        "brain (class 2)",
    ]
    (back,) = find_pairs(tmp_path / "images", path.parent)[0]
    assert np.array_equal(back.read_mask().array, cleansed)
    assert back.mask.class_names() == {"lesion": 1, "brain": 2}

    plain = tmp_path / "plain" / "x.dcm"
    write_array(plain, cleansed, given.geometry, kind=layout.CLEANSED)
    assert [s.SegmentLabel for s in pydicom.dcmread(plain).SegmentSequence] == ["Tumour", "Tissue"]


def test_a_written_rtstruct_carries_the_declared_names(tmp_path, built):
    (case,) = rt_cases(built, picks=(3,))
    (pair,) = find_pairs(*write_cases([case], tmp_path / "i", tmp_path / "m"))[0]
    assert pair.mask.class_names() == {"GTV": 1, "Ring": 2}
    given = pair.read_mask()
    path = tmp_path / "out" / "rt.dcm"
    write_array(path, given.array, given.geometry, class_names={1: "tumour", 2: "ring"})
    assert dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert [r.ROIName for r in back.StructureSetROISequence] == ["tumour", "ring"]
    save(back, tmp_path / "again" / "rt.dcm")
    (again,) = find_pairs(tmp_path / "i", tmp_path / "again")[0]
    assert np.array_equal(again.read_mask().array, given.array)
