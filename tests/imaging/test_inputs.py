"""The inputs people have: 3D Slicer's ``case.seg.nrrd``, JPEG images, MetaImage (``.mha``,
``.mhd`` + data file) images and masks, and a clear refusal of DICOM where it is not read.
Every file is written by the test from the real samples, with SimpleITK or PIL as the other
reader.
"""

from __future__ import annotations

import shutil

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.data import get_testdata_file

from imaging.cases import find_cases, index_folder, read_case
from imaging.errors import ErrorCode, InputError
from imaging.formats import (
    issue_map_target,
    label_extension,
    read_image,
    read_mask,
    split_name,
)
from imaging.write import write_array
from tests.conftest import HC18, MR

CASES = ("brain1", "breast1")


def _slicer_folders(root, *, one_folder=False):
    images = root / "scene" if one_folder else root / "images"
    masks = images if one_folder else root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        shutil.copy(MR / f"{name}_image.nrrd", images / f"{name}.nrrd")
        shutil.copy(MR / f"{name}_label.nrrd", masks / f"{name}.seg.nrrd")
    return images, masks


@pytest.mark.parametrize("one_folder", [False, True])
def test_a_slicer_seg_nrrd_is_the_mask_of_its_volume(tmp_path, one_folder):
    images, masks = _slicer_folders(tmp_path, one_folder=one_folder)
    assert split_name(masks / "brain1.seg.nrrd") == ("brain1", ".seg.nrrd")
    cases = find_cases(images, masks)
    assert [c.case_id for c in cases] == list(CASES)
    assert all(c.mask.name.endswith(".seg.nrrd") and c.image.suffix == ".nrrd" for c in cases)
    checked = read_case(cases[0], limit=256, explicit=False)
    label, _ = nrrd.read(str(MR / "brain1_label.nrrd"))
    assert np.array_equal(checked.mask.array, label)
    # Outputs keep the name; an issue map is no segmentation to Slicer.
    out = tmp_path / "out" / "brain1.seg.nrrd"
    write_array(out, checked.mask.array, checked.mask.geometry)
    assert np.array_equal(read_mask(out, case="brain1").array, label)
    assert issue_map_target(".seg.nrrd", checked.mask.geometry)[0] == ".nrrd"


def test_jpeg_images_are_read_and_jpeg_masks_refused(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    names = sorted(p.stem for p in (HC18 / "images").iterdir())[:2]
    for name in names:
        Image.open(HC18 / "images" / f"{name}.png").convert("L").save(
            images / f"{name}.jpg", quality=95
        )
        shutil.copy(HC18 / "masks" / f"{name}.png", masks / f"{name}.png")
    png = read_image(HC18 / "images" / f"{names[0]}.png", case="x").array
    jpeg = read_image(images / f"{names[0]}.jpg", case="x").array
    assert jpeg.shape == (1, *png.shape[-2:]) and jpeg.dtype == np.float32
    assert png.shape[0] == 1 and np.abs(jpeg - png).mean() < 3  # lossy, but close

    cases = find_cases(images, masks)
    assert [c.case_id for c in cases] == names
    assert read_case(cases[0], limit=2, explicit=False).max_label == 1
    assert label_extension(images / f"{names[0]}.jpg") == ".png"

    Image.open(masks / f"{names[0]}.png").save(masks / "lossy.jpeg")
    with pytest.raises(InputError) as refused:
        read_mask(masks / "lossy.jpeg", case="lossy")
    assert refused.value.code == ErrorCode.UNSUPPORTED_FORMAT and "lossy" in refused.value.detail


def test_metaimage_volumes_match_the_nrrd_they_came_from(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in CASES:
        # .mha for the images, .mhd with a compressed .zraw beside it for the masks.
        sitk.WriteImage(sitk.ReadImage(str(MR / f"{name}_image.nrrd")), str(images / f"{name}.mha"))
        label = sitk.ReadImage(str(MR / f"{name}_label.nrrd"))
        sitk.WriteImage(label, str(masks / f"{name}.mhd"), useCompression=True)
    assert sorted(p.suffix for p in masks.iterdir()) == [".mhd", ".mhd", ".zraw", ".zraw"]
    assert sorted(index_folder(masks, "mask")) == list(CASES)

    data, header = nrrd.read(str(MR / "brain1_image.nrrd"))
    image = read_image(images / "brain1.mha", case="brain1")
    assert image.array.shape == (1, *data.shape)
    assert np.array_equal(image.array[0], data.astype(np.float32))
    expected = np.eye(4)
    expected[:3, :3] = np.asarray(header["space directions"], float).T
    expected[:3, 3] = header["space origin"]
    assert np.allclose(image.geometry.affine, expected, atol=1e-5)  # both LPS, as ITK and Slicer

    cases = find_cases(images, masks)
    checked = read_case(cases[0], limit=256, explicit=False)
    out = tmp_path / "out" / "brain1.mha"
    write_array(out, checked.mask.array, checked.mask.geometry)
    again = sitk.ReadImage(str(out))
    assert np.array_equal(sitk.GetArrayFromImage(again).transpose(2, 1, 0), checked.mask.array)
    assert np.allclose(again.GetOrigin(), header["space origin"], atol=1e-5)
    assert np.allclose(again.GetSpacing(), sitk.ReadImage(str(masks / "brain1.mhd")).GetSpacing())


def test_a_2d_metaimage_keeps_its_spacing_per_axis(tmp_path):
    png = np.asarray(Image.open(HC18 / "masks" / "000_HC.png"))
    image = sitk.GetImageFromArray(png)
    image.SetSpacing((0.5, 0.25))  # ITK's (x, y): columns 0.5 mm apart, rows 0.25 mm
    sitk.WriteImage(image, str(tmp_path / "case.mha"))
    mask = read_mask(tmp_path / "case.mha", case="case")
    assert mask.array.shape == mask.geometry.shape == png.shape
    assert mask.geometry.spacing == (0.25, 0.5)
    assert np.array_equal(mask.array, png)
    write_array(tmp_path / "out.mha", mask.array, mask.geometry)
    assert sitk.ReadImage(str(tmp_path / "out.mha")).GetSpacing() == (0.5, 0.25)


@pytest.mark.parametrize("nested", [False, True])
def test_dicom_is_named_where_it_is_not_read(tmp_path, nested):
    folder = tmp_path / "study"
    series = folder / "series1" if nested else folder
    series.mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), series / "IM0001.dcm")
    with pytest.raises(InputError) as refused:
        index_folder(folder, "image")
    assert refused.value.code == ErrorCode.UNSUPPORTED_FORMAT
    assert "holds DICOM files" in refused.value.detail and "holds no" not in refused.value.detail
    # A folder with nothing readable at all is still just empty.
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as empty:
        index_folder(tmp_path / "empty", "image")
    assert empty.value.code == ErrorCode.EMPTY_FOLDER


def test_a_metaimage_header_gives_its_grid_and_says_where_its_voxels_are(tmp_path):
    from imaging.formats import header_shape

    volume = sitk.ReadImage(str(MR / "brain1_image.nrrd"))
    sitk.WriteImage(volume, str(tmp_path / "v.mha"))
    sitk.WriteImage(volume, str(tmp_path / "v.mhd"))
    assert header_shape(tmp_path / "v.mha") == volume.GetSize()  # (X, Y, Z), as read_image
    with pytest.raises(InputError) as refused:
        header_shape(tmp_path / "v.mhd")
    assert refused.value.code == ErrorCode.UNSUPPORTED_FORMAT and "v.raw" in str(refused.value)
    png = np.asarray(Image.open(HC18 / "images" / "000_HC.png"))
    sitk.WriteImage(sitk.GetImageFromArray(png), str(tmp_path / "flat.mha"))
    assert header_shape(tmp_path / "flat.mha") == png.shape[:2]  # (H, W)
    (tmp_path / "junk.mha").write_bytes(b"\x00\x01 not a header")
    with pytest.raises(ValueError, match="no MetaImage header"):
        header_shape(tmp_path / "junk.mha")
