"""DICOM-SEG masks: paired with their series by UID, placed by position, classes across cases."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from imaging.dicom.cases import find_pairs
from imaging.errors import ErrorCode, InputError
from tests.imaging.dicom.builders import (
    TISSUE,
    TUMOUR,
    Study,
    mr_series,
    multiframe,
    nrrd_volume,
    save,
    seg_for,
    segment,
    world_equal,
    write_cases,
)
from tests.imaging.dicom.conftest import shared


def pairs_of(tmp_path, cases):
    images, masks = write_cases(cases, tmp_path / "images", tmp_path / "masks")
    pairs, notes = find_pairs(images, masks)
    return pairs, notes


def by_name(pairs):
    return {p.case_id: p for p in pairs}


def test_every_seg_reads_back_as_drawn(tmp_path, built):
    pairs, notes = pairs_of(tmp_path, built)
    found = by_name(pairs)
    assert sorted(found) == sorted(c.name for c in built)
    assert [p.case_id for p in pairs] == sorted(found)
    assert not any("BRAIN" in name or "BREAST" in name for name in found)
    assert notes == []
    for case in built:
        pair = found[case.name]
        mask, image = pair.read_mask(), pair.read_image()
        assert mask.array.dtype == np.uint8 and image.array.shape == (1, *mask.array.shape)
        assert np.allclose(mask.geometry.affine, image.geometry.affine)
        world_equal(mask.array, mask.geometry.affine, case.labels, case.affine)
    assert sum(int(p.read_mask().array.sum()) for p in pairs) == sum(
        int(c.labels.sum()) for c in built
    )


def _two_class(labels: np.ndarray) -> np.ndarray:
    """Tumour (1) and a band of tissue (2) beside it: two classes that never overlap."""
    out = labels.copy()
    out[np.roll(labels, 4, axis=0).astype(bool) & (labels == 0)] = 2
    return out


def test_segments_become_the_same_classes_in_every_case(tmp_path, built):
    first, second = built[2], built[3]  # two brain slabs with tumour
    first.labels = _two_class(first.labels)
    first.mask = seg_for(first.images, first.labels, first.affine, kinds=(TUMOUR, TISSUE))
    swapped = np.choose(_two_class(second.labels), [0, 2, 1]).astype(
        np.uint8
    )  # tissue = 1, tumour = 2
    second.mask = seg_for(second.images, swapped, second.affine, kinds=(TISSUE, TUMOUR))
    found = by_name(pairs_of(tmp_path, [first, second])[0])
    a, b = found[first.name], found[second.name]
    # Classes follow the first case in name order; the other's segments map onto them.
    expected_a, expected_b = first.labels, _two_class(second.labels)
    if first.name < second.name:
        assert a.mask.classes == {1: 1, 2: 2} and b.mask.classes == {1: 2, 2: 1}
    else:  # the second case came first: tissue is class 1
        assert b.mask.classes == {1: 1, 2: 2} and a.mask.classes == {1: 2, 2: 1}
        expected_a, expected_b = np.choose(first.labels, [0, 2, 1]), swapped
    world_equal(a.read_mask().array, a.series.affine, expected_a, first.affine)
    world_equal(b.read_mask().array, b.series.affine, expected_b, second.affine)


@pytest.mark.parametrize("kind", ["FRACTIONAL", "LABELMAP"])
def test_fractional_and_labelmap_segs(tmp_path, built, kind):
    case = built[3]
    case.labels = _two_class(case.labels)
    case.mask = seg_for(
        case.images, case.labels, case.affine, kinds=(TUMOUR, TISSUE), segmentation_type=kind
    )
    assert case.mask.SegmentationType == kind
    pair = pairs_of(tmp_path, [case])[0][0]
    world_equal(pair.read_mask().array, pair.series.affine, case.labels, case.affine)


def test_overlapping_segments_are_refused(tmp_path, built):
    case = built[3]
    tumour = case.labels.astype(bool)
    grown = tumour | np.roll(tumour, 2, axis=0)  # covers part of the tumour
    stacked = np.stack([tumour, grown], axis=-1).transpose(2, 1, 0, 3).astype(np.uint8)
    case.mask = hd.seg.Segmentation(
        source_images=case.images,
        pixel_array=stacked,
        segmentation_type="BINARY",
        segment_descriptions=[segment(1, TUMOUR), segment(2, TISSUE)],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="x",
        manufacturer_model_name="x",
        software_versions="1",
        device_serial_number="1",
    )
    pair = pairs_of(tmp_path, [case])[0][0]
    with pytest.raises(InputError) as info:
        pair.read_mask()
    err = info.value
    assert err.code == ErrorCode.SEGMENTS_OVERLAP and err.case == case.name
    assert "segments 1 'Tumour' and 2 'Tissue'" in str(err) and "overlap in" in str(err)


def _expect(tmp_path, cases, code, *fragments, read=False):
    with pytest.raises(InputError) as info:
        pairs, _ = pairs_of(tmp_path, cases)
        if read:
            for pair in pairs:
                pair.read_mask()
    assert info.value.code == code, str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


def test_a_seg_of_a_series_that_is_not_there(tmp_path, built):
    image, label, affine = nrrd_volume("breast1")
    elsewhere = mr_series(image[:, :, :5], affine, Study("OTHER"), series_number=7)
    orphan = built[5]
    orphan.mask = seg_for(elsewhere, label[:, :, :5], affine)
    missing = elsewhere[0].SeriesInstanceUID
    _expect(tmp_path, [built[0], orphan], ErrorCode.MISSING_IMAGE, "mask_01.dcm", missing)


def test_a_series_missing_images_the_seg_references(tmp_path, built):
    case = built[3]
    case.images = case.images[:-1]
    _expect(tmp_path, [case], ErrorCode.MISSING_IMAGE, "references 1 images that series 4", "lacks")


def test_a_seg_off_the_series_grid(tmp_path, built):
    case = built[3]
    frame = case.mask.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    frame.ImagePositionPatient = [
        float(v) + d for v, d in zip(frame.ImagePositionPatient, (0, 0, 2), strict=True)
    ]
    err = _expect(
        tmp_path, [case], ErrorCode.GEOMETRY_MISMATCH, "frame 1 of SEG mask_00.dcm", read=True
    )
    assert "2.00 mm from the nearest slice of series 4" in str(err) and err.case == case.name
    case = built[4]
    measures = case.mask.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.PixelSpacing = [0.9, 0.9]
    shutil.rmtree(tmp_path)
    err = _expect(
        tmp_path, [case], ErrorCode.GEOMETRY_MISMATCH, "does not lie on the grid", read=True
    )
    assert "(0.9, 0.9) mm, the series' (0.78125, 0.78125)" in str(err)


def test_two_segs_of_one_series(tmp_path, built):
    case = built[3]
    copy = seg_for(case.images, case.labels, case.affine)
    save(copy, tmp_path / "masks" / "zz_second.dcm")
    _expect(tmp_path, [case], ErrorCode.DUPLICATE_CASE, "mask_00.dcm and zz_second.dcm")


def test_series_without_a_mask_are_left_out_with_a_note(tmp_path, built, caplog):
    images, masks = write_cases(built[:3], tmp_path / "images", tmp_path / "masks")
    (masks / "mask_01.dcm").unlink()
    with caplog.at_level(logging.WARNING, logger="segaudit.dicom"):
        pairs, notes = find_pairs(images, masks)
    assert [p.case_id for p in pairs] == sorted([built[0].name, built[2].name])
    uid = built[1].images[0].SeriesInstanceUID
    assert notes == [f"left out 1 image series that no mask references: series 2 'T1 AX' ({uid})"]
    assert "left out 1 image series" in caplog.text


@pytest.mark.slow
def test_dcmqi_liver_seg_matches_highdicom():
    root = shared("dcmqi_ct3slice_liverSEG")
    pairs, _ = find_pairs(root / "ct", root / "seg" / "liver_seg.dcm")
    (pair,) = pairs
    mask = pair.read_mask().array
    seg = hd.seg.segread(root / "seg" / "liver_seg.dcm")
    uids = [p.sop_instance_uid for p in pair.series.planes]
    expected = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, ignore_spatial_locations=True
    )
    assert np.array_equal(mask, expected.transpose(2, 1, 0)) and mask.sum() == 107098
    first = pydicom.dcmread(pair.series.planes[0].source.path)
    assert float(first.RescaleIntercept) == -1024  # stored values are HU + 1024
    hu = first.pixel_array.T.astype(np.float32) - 1024
    assert np.array_equal(pair.read_image().array[0, :, :, 0], hu)
    assert pair.series.spacing == pytest.approx((0.810547, 0.810547, 1.0))


@pytest.mark.slow
def test_dcmqi_partial_overlaps_are_refused(tmp_path):
    root = shared("dcmqi_ct3slice_liverSEG")
    shutil.copy(root / "seg" / "partial_overlaps.dcm", tmp_path / "seg.dcm")
    (pair,) = find_pairs(root / "ct", tmp_path)[0]
    with pytest.raises(InputError) as info:
        pair.read_mask()
    assert info.value.code == ErrorCode.SEGMENTS_OVERLAP and "'GREEN'" in str(info.value)


def test_an_irregular_series_that_no_mask_references_is_only_noted(tmp_path, built):
    """pydicom's DICOMDIR set, with a localizer of three orientations, beside two cases."""
    images, masks = write_cases(built[2:4], tmp_path / "images", tmp_path / "masks")
    root = Path(get_testdata_file("DICOMDIR")).parent
    shutil.copytree(root / "98892003", images / "other" / "98892003")
    shutil.copy(root / "DICOMDIR", images / "other" / "DICOMDIR")
    pairs, notes = find_pairs(images, masks)
    assert [p.case_id for p in pairs] == sorted([built[2].name, built[3].name])
    assert any(n.startswith("left out 7 image series that no mask references") for n in notes)
    assert any("1 DICOMDIR index" in n for n in notes)


def test_a_series_split_over_multiframe_instances_is_refused(tmp_path):
    image, label, affine = nrrd_volume("breast1")
    study = Study("P")
    singles = mr_series(image[:, :, :6], affine, study, series_number=5)
    first, second = multiframe(singles[:3]), multiframe(singles[3:])
    second[0].SeriesInstanceUID = first[0].SeriesInstanceUID
    for index, ds in enumerate(first + second):
        save(ds, tmp_path / "images" / f"{index}")
    save(seg_for(first, label[:, :, :3], affine), tmp_path / "masks" / "seg.dcm")
    with pytest.raises(InputError) as info:
        find_pairs(tmp_path / "images", tmp_path / "masks")
    assert info.value.code == ErrorCode.UNSUPPORTED_FORMAT
    assert "split over several multi-frame instances" in str(info.value)
