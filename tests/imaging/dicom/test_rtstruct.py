"""RTSTRUCT masks: contours rasterised with the right patient-to-voxel transform, and back."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from imaging.dicom.cases import find_pairs
from imaging.dicom.export import build_rtstruct
from imaging.dicom.labels import pseudonym
from imaging.errors import ErrorCode, InputError
from tests.imaging.dicom.builders import (
    Study,
    mr_series,
    rtstruct_for,
    save,
    world_equal,
    write_cases,
)
from tests.imaging.dicom.conftest import RTUTILS, dciodvfy_errors, shared


def oblique_affine() -> np.ndarray:
    """A series tilted about two axes, with different spacings along x, y and z."""
    a, b = np.deg2rad(30), np.deg2rad(20)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.7, 0.9, 3.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return affine


def box(x0: float, x1: float, y0: float, y1: float, z: int, affine: np.ndarray) -> np.ndarray:
    """The corners of a rectangle in voxel coordinates, as patient coordinates ``(4, 3)``."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return np.asarray([(affine @ [x, y, z, 1.0])[:3] for x, y in corners])


def test_a_known_contour_lands_on_the_right_voxels(tmp_path):
    affine = oblique_affine()
    volume = np.arange(40 * 30 * 4, dtype=np.int16).reshape(40, 30, 4)
    images = mr_series(volume, affine, Study("OBL"), series_number=1)
    outer = box(4.5, 12.5, 19.5, 24.5, 2, affine)  # voxels x 5..12, y 20..24 on slice 2
    hole = box(6.6, 9.4, 21.2, 22.8, 2, affine)  # centres x 7..9, y 22 are inside it
    rt = rtstruct_for(
        images, np.zeros(volume.shape, np.uint8), affine, extra_contours={1: [outer, hole]}
    )
    for index, ds in enumerate(images):
        save(ds, tmp_path / "images" / f"{index}")
    save(rt, tmp_path / "masks" / "rt.dcm")
    (pair,) = find_pairs(tmp_path / "images", tmp_path / "masks")[0]
    mask = pair.read_mask().array
    expected = np.zeros(volume.shape, np.uint8)
    expected[5:13, 20:25, 2] = 1
    expected[7:10, 22, 2] = 0
    world_equal(mask, pair.series.affine, expected, affine)
    world_equal(pair.read_image().array[0], pair.series.affine, volume.astype(np.float32), affine)


def test_rtutils_phantom_square_with_a_hole(caplog):
    """Real data: rt-utils' phantom, a 24 mm square ROI with a 15 mm hole on the first slice."""
    (pair,) = find_pairs(RTUTILS, RTUTILS)[0]
    assert pair.case_id == pseudonym(pair.series.study_uid, pair.series.series_uid)
    assert "PHANTOM" not in pair.case_id and pair.mask.classes == {1: 1}
    mask = pair.read_mask().array
    assert "names frame of reference" in caplog.text  # rt-utils writes a frame of its own
    assert mask.shape == (512, 512, 2) and not mask[:, :, 1].any()
    xs, ys = np.nonzero(mask[:, :, 0])
    # x = -125 + 0.488281 i: the square spans -51..-27 mm, so voxel centres 152..200.
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (152, 200, 152, 200)
    assert mask[176, 176, 0] == 0 and mask[155, 176, 0] == 1 and mask[176, 155, 0] == 1
    assert 2401 - 31 * 31 <= mask.sum() < 2401
    first = pydicom.dcmread(RTUTILS / "ct_1.dcm")
    hu = first.pixel_array.T.astype(np.float32) + float(first.RescaleIntercept)
    assert np.array_equal(pair.read_image().array[0, :, :, 0], hu)


def _two_roi(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[np.roll(labels, 4, axis=0).astype(bool) & (labels == 0)] = 2
    return out


def rt_cases(built, picks=(2, 3, 5)):
    cases = [built[i] for i in picks]
    for case in cases:
        case.labels = _two_roi(case.labels)
        case.mask = rtstruct_for(case.images, case.labels, case.affine, ("GTV", "Ring"))
    return cases


def test_rtstructs_read_back_as_drawn(tmp_path, built):
    cases = rt_cases(built)
    pairs = {
        p.case_id: p for p in find_pairs(*write_cases(cases, tmp_path / "i", tmp_path / "m"))[0]
    }
    for case in cases:
        pair = pairs[case.name]
        assert pair.mask.classes == {1: 1, 2: 2}
        world_equal(pair.read_mask().array, pair.series.affine, case.labels, case.affine)


def test_written_rtstruct_validates_and_reads_back(tmp_path, built):
    (case,) = rt_cases(built, picks=(3,))
    images, masks = write_cases([case], tmp_path / "i", tmp_path / "m")
    (pair,) = find_pairs(images, masks)[0]
    given = pair.read_mask().array
    changed = given.copy()
    changed[100:120, 100:110, 1] = 2  # a new ring piece with a hole in it
    changed[105:108, 103:106, 1] = 0
    changed[given == 1] = 0  # and the GTV gone
    written = build_rtstruct(changed, pair.mask, kind="cleansed")
    save(written, tmp_path / "out" / "rt.dcm")
    assert dciodvfy_errors(tmp_path / "out" / "rt.dcm") == []
    back = pydicom.dcmread(tmp_path / "out" / "rt.dcm")
    assert back.Manufacturer == "segaudit" and back.StructureSetLabel == "CLEANSED"
    assert back.SOPInstanceUID != case.mask.SOPInstanceUID
    assert back.SeriesInstanceUID != case.mask.SeriesInstanceUID
    assert back.StudyInstanceUID == case.images[0].StudyInstanceUID
    assert [r.ROIName for r in back.StructureSetROISequence] == ["GTV", "Ring"]
    assert [list(r.ROIDisplayColor) for r in back.ROIContourSequence] == [[255, 0, 0], [0, 255, 0]]
    assert [o.RTROIInterpretedType for o in back.RTROIObservationsSequence] == ["GTV", "ORGAN"]
    (again,) = find_pairs(images, tmp_path / "out")[0]
    assert np.array_equal(again.read_mask().array, changed)
    unchanged = build_rtstruct(given, pair.mask)
    save(unchanged, tmp_path / "same" / "rt.dcm")
    (same,) = find_pairs(images, tmp_path / "same")[0]
    assert np.array_equal(same.read_mask().array, given)


def _expect(tmp_path, cases, code, *fragments):
    with pytest.raises(InputError) as info:
        for pair in find_pairs(*write_cases(cases, tmp_path / "i", tmp_path / "m"))[0]:
            pair.read_mask()
    assert info.value.code == code, str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_overlapping_rois_are_refused(tmp_path, built):
    case = built[3]
    labels = _two_roi(case.labels)
    body = box(-0.5, 255.5, -0.5, 255.5, 2, case.affine)
    case.mask = rtstruct_for(
        case.images, labels, case.affine, ("GTV", "Ring"), extra_contours={2: [body]}
    )
    _expect(tmp_path, [case], ErrorCode.SEGMENTS_OVERLAP, "ROIs 'GTV' and 'Ring'", "overlap in")


def test_contours_off_the_slices_are_refused(tmp_path, built):
    case = built[3]
    step = case.affine[:3, 2]
    tilted = box(10, 20, 10, 20, 1, case.affine) + step * np.array([[0], [0], [0.5], [0.5]])
    case.mask = rtstruct_for(case.images, case.labels, case.affine, extra_contours={1: [tilted]})
    _expect(tmp_path, [case], ErrorCode.GEOMETRY_MISMATCH, "ROI 'GTV'", "mm off slice")
    beyond = box(10, 20, 10, 20, 9, case.affine)
    case.mask = rtstruct_for(case.images, case.labels, case.affine, extra_contours={1: [beyond]})
    _expect(tmp_path / "b", [case], ErrorCode.GEOMETRY_MISMATCH, "outside the slices")


def test_seg_and_rtstruct_masks_are_not_mixed(tmp_path, built):
    rt = rt_cases(built, picks=(3,))[0]
    _expect(tmp_path, [built[2], rt], ErrorCode.UNSUPPORTED_FORMAT, "mixes SEG and RTSTRUCT")


@pytest.mark.slow
def test_dicompyler_structure_set_on_an_incomplete_series():
    root = shared("dicompyler_breast_rtstruct")
    with pytest.raises(InputError) as info:
        find_pairs(root, root)
    assert info.value.code == ErrorCode.MISSING_IMAGE
    assert "rtss.dcm references" in str(info.value) and "the series is incomplete" in str(
        info.value
    )


def test_rois_of_points_are_left_out_with_a_note(tmp_path, built):
    case = built[3]
    marker = np.asarray([(case.affine @ [30, 40, 1, 1])[:3]])
    case.mask = rtstruct_for(
        case.images, case.labels, case.affine, ("GTV", "Marker"), extra_contours={2: [marker]}
    )
    case.mask.ROIContourSequence[1].ContourSequence[0].ContourGeometricType = "POINT"
    (pair,), notes = find_pairs(*write_cases([case], tmp_path / "i", tmp_path / "m"))
    assert pair.mask.classes == {1: 1}
    assert notes == ["mask_00.dcm: left out ROIs drawn only as points or open lines: Marker"]
    world_equal(pair.read_mask().array, pair.series.affine, case.labels, case.affine)
