"""Cleansed masks written as DICOM-SEG: valid, referencing the source, exactly the mask."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

import models
from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.dicom.export import build_seg
from imaging.formats import issue_map_target, output_extension
from imaging.geometry import DICOM_SEG
from imaging.write import write_array
from tests.imaging.dicom.builders import TISSUE, TUMOUR, seg_for, write_cases
from tests.imaging.dicom.conftest import dciodvfy_errors


def pairs_by_name(tmp_path, cases):
    pairs = find_pairs(*write_cases(cases, tmp_path / "images", tmp_path / "masks"))[0]
    return {p.case_id: p for p in pairs}


def frames_by_highdicom(path, pair) -> np.ndarray:
    """The SEG read by highdicom alone, as ``(X, Y, Z)`` in the series' slice order."""
    seg = hd.seg.segread(path)
    planes = pair.series.planes
    if planes[0].frame is None:
        uids = [p.sop_instance_uid for p in planes]
        stack = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    else:
        stack = seg.get_pixels_by_source_frame(
            planes[0].sop_instance_uid,
            [p.frame for p in planes],
            combine_segments=True,
            assert_missing_frames_are_empty=True,  # frames left out of the SEG are empty
        )
    return stack.transpose(2, 1, 0)


@pytest.mark.parametrize("index", [3, 6], ids=["single-frame", "multi-frame"])
def test_cleansed_seg_is_valid_and_exactly_the_mask(tmp_path, built, index):
    other = built[2]  # another case's SEG describes a second class, "Tissue"
    other.mask = seg_for(other.images, other.labels * 2, other.affine, kinds=(TUMOUR, TISSUE))
    case = built[index]
    pair = pairs_by_name(tmp_path, [other, case])[case.name]
    given = pair.read_mask()
    assert given.geometry.fmt == DICOM_SEG
    cleansed = given.array.copy()
    cleansed[given.array == 1] = 0  # the tumour removed ...
    cleansed[10:20, 30:35, 1:3] = 1  # ... redrawn elsewhere ...
    cleansed[25:28, 40:42, 2] = 2  # ... and some tissue that this case's SEG never had
    path = (
        tmp_path
        / "out"
        / "cleansed"
        / f"{pair.case_id}{output_extension(pair.mask_path, given.geometry)}"
    )
    write_array(path, cleansed, given.geometry, kind=layout.CLEANSED)
    assert path.suffix == ".dcm"
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    source = case.mask
    assert ds.SOPClassUID == source.SOPClassUID and ds.Modality == "SEG"
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.StudyInstanceUID == case.images[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == case.images[0].FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == case.images[0].SeriesInstanceUID
    assert ds.Manufacturer == "segaudit" and ds.SoftwareVersions == models.__version__
    assert ds.ContentLabel == "CLEANSED" and ds.SeriesDescription.startswith("segaudit cleansed")
    labels = [s.SegmentLabel for s in ds.SegmentSequence]
    assert labels == ["Tumour", "Tissue"]
    assert ds.SegmentSequence[0].TrackingUID == source.SegmentSequence[0].TrackingUID
    assert ds.SegmentSequence[1].TrackingUID == other.mask.SegmentSequence[1].TrackingUID
    assert np.array_equal(frames_by_highdicom(path, pair), cleansed)
    (back,) = find_pairs(tmp_path / "images", path.parent)[0]
    assert np.array_equal(back.read_mask().array, cleansed)


def test_unchanged_mask_gives_the_same_frames(tmp_path, built):
    case = built[3]
    (pair,) = pairs_by_name(tmp_path, [case]).values()
    given = pair.read_mask()
    out = build_seg(given.array, pair.mask, kind="pseudo_labels")
    assert out.ContentLabel == "PSEUDO_LABEL"

    def frames(ds):
        shared = ds.SharedFunctionalGroupsSequence[0]
        found = []
        for f in ds.PerFrameFunctionalGroupsSequence:
            ident = f.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
            source = f.DerivationImageSequence[0].SourceImageSequence[0]
            found.append((source.ReferencedSOPInstanceUID, ident[0].ReferencedSegmentNumber))
        return found

    assert sorted(frames(out)) == sorted(frames(case.mask))
    assert np.array_equal(out.pixel_array, case.mask.pixel_array)


def test_fractional_input_gives_a_fractional_output(tmp_path, built):
    case = built[3]
    case.mask = seg_for(case.images, case.labels, case.affine, segmentation_type="FRACTIONAL")
    (pair,) = pairs_by_name(tmp_path, [case]).values()
    given = pair.read_mask()
    path = tmp_path / "out" / "cleansed" / "x.dcm"
    write_array(path, given.array, given.geometry, kind=layout.CLEANSED)
    ds = hd.seg.segread(path)
    assert ds.SegmentationType == "FRACTIONAL" and ds.MaximumFractionalValue == 255
    assert dciodvfy_errors(path) == []
    assert np.array_equal(frames_by_highdicom(path, pair) > 0.5, given.array == 1)


def test_issue_maps_of_dicom_cases_are_nifti_on_the_series_grid(tmp_path, built):
    import nibabel as nib

    case = built[3]
    (pair,) = pairs_by_name(tmp_path, [case]).values()
    geometry = pair.read_mask().geometry
    ext, nifti = issue_map_target(".dcm", geometry)
    assert ext == ".nii.gz" and nifti.fmt == "nifti"
    values = np.arange(np.prod(geometry.shape), dtype=np.uint8).reshape(geometry.shape)
    write_array(tmp_path / "map.nii.gz", values, nifti)
    img = nib.load(tmp_path / "map.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj), values)
    assert np.allclose(np.diag([-1, -1, 1, 1]) @ img.affine, pair.series.affine)  # RAS -> LPS
