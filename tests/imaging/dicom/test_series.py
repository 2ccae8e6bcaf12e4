"""Image series: found by content, grouped by UID, ordered along the normal, decoded, checked."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from imaging.dicom.source import is_dicom_input, scan
from imaging.errors import ErrorCode, InputError
from tests.imaging.dicom.builders import (
    Study,
    group_series,
    mr_series,
    multiframe,
    nrrd_volume,
    save,
    world_equal,
)


def read_folder(folder: Path):
    series, skipped = group_series(scan(folder).objects)
    return series, skipped


def only(series: dict):
    assert len(series) == 1, list(series)
    return next(iter(series.values()))


def write_all(datasets, folder: Path, names=None) -> Path:
    for index, ds in enumerate(datasets):
        save(ds, folder / (names[index] if names else f"{index:04d}.dcm"))
    return folder


def test_series_lies_where_the_volume_lies(tmp_path):
    image, _, affine = nrrd_volume("brain1")  # its slice axis runs against row x column
    study = Study("P1")
    files = mr_series(image, affine, study, series_number=3)
    rng = np.random.default_rng(0)
    names = [f"x{n:05d}" for n in rng.permutation(len(files))]  # file names say nothing
    series = only(read_folder(write_all(files, tmp_path / "s", names))[0])
    volume = series.read()
    assert series.shape == image.shape and series.spacing == pytest.approx((0.78125, 0.78125, 6.5))
    normal = np.cross(series.affine[:3, 0], series.affine[:3, 1])
    assert normal @ series.affine[:3, 2] > 0, "slices run along the normal"
    world_equal(volume, series.affine, image.astype(np.float32), affine)
    assert np.array_equal(volume, image[:, :, ::-1]), "brain1's slices come out reversed"
    assert series.series_number == 3 and series.study_uid == study.study_uid


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    values = image[:, :, :4].astype(np.int32) * 2 - 100  # representable as 2 * stored - 100
    files = mr_series(values, affine, Study("P"), series_number=1, rescale=(2.0, -100.0))
    assert np.array_equal(files[0].pixel_array, image[:, :, 0].T)  # stored, not the values
    series = only(read_folder(write_all(files, tmp_path / "s"))[0])
    world_equal(series.read(), series.affine, values.astype(np.float32), affine)


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless, ImplicitVRLittleEndian]
)
def test_compressed_series_read_like_uncompressed(tmp_path, syntax):
    image, _, affine = nrrd_volume("breast1")
    files = mr_series(image[:, :, 3:7], affine, Study("P"), series_number=1, syntax=syntax)
    assert files[0].file_meta.TransferSyntaxUID == syntax
    series = only(read_folder(write_all(files, tmp_path / "s"))[0])
    world_equal(series.read(), series.affine, image[:, :, 3:7].astype(np.float32), affine)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_pydicoms_compressed_files_decode(tmp_path, name):
    plain_dir, packed_dir = tmp_path / "plain", tmp_path / "packed"
    plain_dir.mkdir()
    packed_dir.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), plain_dir / "a")
    shutil.copy(get_testdata_file(name), packed_dir / "a")
    reference = only(read_folder(plain_dir)[0]).read()
    assert reference.shape == (64, 64, 1)
    assert np.array_equal(only(read_folder(packed_dir)[0]).read(), reference)


def test_multiframe_instance_reads_like_its_single_frames(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    files = mr_series(image[:, :, 5:10], affine, Study("P"), series_number=2)
    single = only(read_folder(write_all(files, tmp_path / "single"))[0])
    enhanced = multiframe(files)
    assert "PerFrameFunctionalGroupsSequence" in enhanced[0]
    multi = only(read_folder(write_all(enhanced, tmp_path / "multi"))[0])
    assert multi.shape == single.shape and np.allclose(multi.affine, single.affine, atol=1e-4)
    assert np.array_equal(multi.read(), single.read())
    assert {p.frame for p in multi.planes} == {1, 2, 3, 4, 5}


def test_series_are_grouped_by_uid_not_by_folder(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    study = Study("P")
    a = mr_series(image[:, :, :4], affine, study, series_number=1)
    b = mr_series(image[:, :, 4:9], affine, study, series_number=2)
    flat = tmp_path / "flat"  # both series in one folder, interleaved
    write_all([x for pair in zip(a, b, strict=False) for x in pair] + b[4:], flat)
    series = read_folder(flat)[0]
    assert sorted(s.shape[2] for s in series.values()) == [4, 5]
    split = tmp_path / "split"  # one series spread over two folders
    write_all(a[:2], split / "x")
    write_all(a[2:], split / "y" / "deeper")
    assert only(read_folder(split)[0]).shape == (45, 120, 4)


def test_zip_nested_folders_dicomdir_and_other_files(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    files = mr_series(image[:, :, :3], affine, Study("P"), series_number=1)
    fileset = FileSet()
    for ds in files:
        fileset.add(ds)
    fileset.write(tmp_path / "cd")  # PT000000/ST000000/SE000000/IM000000 and a DICOMDIR
    assert (tmp_path / "cd" / "DICOMDIR").is_file()
    (tmp_path / "cd" / "INDEX.HTM").write_text("<html></html>")
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.write(get_testdata_file("CT_small.dcm"), "more/CT_small")
    with zipfile.ZipFile(tmp_path / "cd" / "extra.zip", "w") as z:
        z.write(inner, "nested/inner.zip")  # a zip inside a zip
    shutil.copytree(tmp_path / "cd", tmp_path / "cd" / "copy", dirs_exist_ok=True)  # repeats
    found = scan(tmp_path / "cd")
    assert sorted(o.modality for o in found.objects) == ["CT", "MR", "MR", "MR"]
    assert any("not DICOM" in n and "INDEX.HTM" in n for n in found.notes)
    assert any("2 DICOMDIR" in n for n in found.notes)
    assert any("4 repeated copy" in n for n in found.notes)
    ct = next(o for o in found.objects if o.modality == "CT")
    assert ct.source.members == ("nested/inner.zip", "more/CT_small")
    series = read_folder(tmp_path / "cd")[0]
    assert sorted(s.shape for s in series.values()) == [(45, 120, 3), (128, 128, 1)]


def test_is_dicom_input(tmp_path, hc18_small):
    images, _ = hc18_small
    assert not is_dicom_input(images)
    assert not is_dicom_input(tmp_path / "missing")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert not is_dicom_input(tmp_path / "a")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "a" / "b" / "IM1")
    assert is_dicom_input(tmp_path / "a")
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
        z.writestr("readme.txt", "x")
    assert is_dicom_input(tmp_path / "x.zip")


def test_non_images_are_left_out_with_a_reason(tmp_path):
    for name in ("CT_small.dcm", "reportsi.dcm", "rtplan.dcm", "rtdose.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    cr = pydicom.dcmread(Path(get_testdata_file("DICOMDIR")).parent / "77654033" / "CR1" / "6154")
    save(cr, tmp_path / "cr")
    series, skipped = read_folder(tmp_path)
    assert [s.modality for s in series.values()] == ["CT"]
    assert skipped == {
        "SR (not an image)": 1,
        "RTPLAN (not an image)": 1,
        "RTDOSE (not an image)": 1,
        "CR (no patient geometry)": 1,
    }


def _error(folder: Path) -> InputError:
    with pytest.raises(InputError) as info:
        only(read_folder(folder)[0]).read()
    return info.value


def test_a_missing_slice_is_refused(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    files = mr_series(image[:, :, :6], affine, Study("P"), series_number=4)
    del files[3]
    err = _error(write_all(files, tmp_path / "s"))
    assert err.code == ErrorCode.SERIES_INCONSISTENT
    assert "unevenly spaced" in str(err) and "missing slice" in str(err) and "series 4" in str(err)


def test_two_images_at_one_position_are_refused(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    study = Study("P")
    files = mr_series(image[:, :, :3], affine, study, series_number=4)
    echo = mr_series(image[:, :, :1], affine, study, series_number=4)[0]
    echo.SeriesInstanceUID = files[0].SeriesInstanceUID  # a second echo in the same series
    err = _error(write_all([*files, echo], tmp_path / "s"))
    assert err.code == ErrorCode.SERIES_INCONSISTENT and "same position" in str(err)


def test_mixed_orientations_and_sizes_are_refused(tmp_path):
    image, _, affine = nrrd_volume("breast1")
    files = mr_series(image[:, :, :3], affine, Study("P"), series_number=4)
    files[1].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    err = _error(write_all(files, tmp_path / "a"))
    assert err.code == ErrorCode.SERIES_INCONSISTENT and "orientations" in str(err)
    study = Study("P")
    files = mr_series(image[:, :, :3], affine, study, series_number=4)
    other = mr_series(image[:20, :, :1], affine, study, series_number=4)[0]
    other.SeriesInstanceUID = files[0].SeriesInstanceUID
    err = _error(write_all([*files, other], tmp_path / "b"))
    assert err.code == ErrorCode.SERIES_INCONSISTENT and "120x20 and 120x45 pixels" in str(err)


def test_pydicoms_dicomdir_set_with_a_localizer_is_refused(tmp_path):
    """pydicom's DICOMDIR test set: a localizer series mixes three orientations."""
    root = Path(get_testdata_file("DICOMDIR")).parent
    shutil.copytree(root / "98892003", tmp_path / "98892003")
    shutil.copy(root / "DICOMDIR", tmp_path / "DICOMDIR")
    with pytest.raises(InputError) as info:
        read_folder(tmp_path)
    assert info.value.code == ErrorCode.SERIES_INCONSISTENT
    assert "orientations" in str(info.value)


def test_truncated_files_are_unreadable(tmp_path):
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "IM1")
    err = _error(tmp_path)
    assert err.code == ErrorCode.UNREADABLE and "IM1" in str(err) and "pixel data" in str(err)
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "IM1").write_bytes(data[:400])  # cut inside the header
    with pytest.raises(InputError) as info:
        read_folder(tmp_path)
    assert info.value.code == ErrorCode.UNREADABLE and "IM1" in str(info.value)
