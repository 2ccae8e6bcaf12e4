import nibabel as nib
import nrrd
import numpy as np
import pytest
import tifffile
from PIL import Image

from imaging.errors import ErrorCode, InputError
from imaging.formats import read_image, read_mask, split_name
from imaging.write import write_array
from tests.conftest import HC18, MR


def nrrd_to_nifti(nrrd_path, nifti_path, *, dtype=None):
    """Write a real NRRD volume as NIfTI, with the NRRD's geometry turned into RAS."""
    data, header = nrrd.read(str(nrrd_path))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(header["space directions"], float).T
    affine[:3, 3] = header["space origin"]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS
    img = nib.Nifti1Image(data.astype(dtype or data.dtype), affine)
    nib.save(img, str(nifti_path))
    return data, affine


def test_split_name_knows_double_extensions(tmp_path):
    assert split_name(tmp_path / "case.01.nii.gz") == ("case.01", ".nii.gz")
    assert split_name(tmp_path / "A.PNG") == ("A", ".png")


def test_png_mask_round_trip_keeps_size_and_values(tmp_path):
    loaded = read_mask(HC18 / "masks" / "000_HC.png", case="000_HC")
    assert loaded.array.shape == loaded.geometry.shape == (540, 800)
    write_array(tmp_path / "out.png", loaded.array, loaded.geometry)
    again = read_mask(tmp_path / "out.png", case="x")
    assert np.array_equal(again.array, loaded.array)


def test_grayscale_image_is_one_channel():
    image = read_image(HC18 / "images" / "000_HC.png", case="000_HC")
    assert image.array.shape == (1, 540, 800) and image.array.dtype == np.float32


def test_rgba_and_palette_images(tmp_path):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", case="a").array.shape == (3, 5, 7)
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png", case="p").array.tolist() == [[0, 1], [2, 1]]
    assert read_image(tmp_path / "p.png", case="p").array.shape == (3, 2, 2)


def test_tiff_round_trip(tmp_path):
    mask = np.asarray(Image.open(HC18 / "masks" / "000_HC.png"))
    tifffile.imwrite(tmp_path / "m.tif", mask)
    loaded = read_mask(tmp_path / "m.tif", case="m")
    write_array(tmp_path / "o.tiff", loaded.array, loaded.geometry)
    assert np.array_equal(tifffile.imread(tmp_path / "o.tiff"), mask)


def test_nrrd_geometry_is_read_and_written_back(tmp_path):
    loaded = read_mask(MR / "brain1_label.nrrd", case="brain1")
    geo = loaded.geometry
    assert geo.shape == (256, 256, 25) and geo.is_3d
    assert geo.spacing == pytest.approx((0.78125, 0.78125, 6.5))
    assert geo.affine[:3, 3] == pytest.approx([-99.609375, 99.609375, -78.0])
    write_array(tmp_path / "b.nrrd", loaded.array.astype(np.uint8), geo)
    data, header = nrrd.read(str(tmp_path / "b.nrrd"))
    assert np.array_equal(data, loaded.array)
    assert header["space"] == "left-posterior-superior"
    assert np.allclose(header["space directions"], [[0.78125, 0, 0], [0, -0.78125, 0], [0, 0, 6.5]])


def test_nifti_geometry_is_read_and_written_back(tmp_path):
    data, affine = nrrd_to_nifti(MR / "breast1_label.nrrd", tmp_path / "in.nii.gz", dtype=np.uint8)
    loaded = read_mask(tmp_path / "in.nii.gz", case="in")
    assert loaded.geometry.shape == (45, 120, 21)
    assert np.allclose(loaded.geometry.affine, affine)
    write_array(tmp_path / "out.nii.gz", loaded.array, loaded.geometry)
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert np.allclose(out.affine, affine) and out.shape == data.shape
    assert np.array_equal(np.asarray(out.dataobj), data)


def test_colour_mask_is_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="colour image") as info:
        read_mask(tmp_path / "c.png", case="c")
    assert info.value.code == ErrorCode.MASK_NOT_INTEGER and info.value.case == "c"


def test_unreadable_file_is_an_input_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="cannot read image bad.png") as info:
        read_image(tmp_path / "bad.png", case="bad")
    assert info.value.code == ErrorCode.UNREADABLE


def test_writer_refuses_an_array_off_the_grid(tmp_path):
    loaded = read_mask(HC18 / "masks" / "000_HC.png", case="000_HC")
    with pytest.raises(ValueError, match="does not match the grid"):
        write_array(tmp_path / "x.png", loaded.array[:10], loaded.geometry)
