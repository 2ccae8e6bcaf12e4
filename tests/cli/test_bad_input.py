"""Every kind of bad input gets one clear error naming the case, a non-zero exit, and no output.

The command line is driven in-process; each error is found before any training starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cli.engine import main
from imaging.errors import ErrorCode
from tests.conftest import HC18, mr_nifti_cases


def run_cli(images: Path, masks: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "audit",
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def expect_error(capsys, images, masks, out, code, *fragments, extra=()):
    rc = run_cli(images, masks, out, *extra)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"[{code}]" in err
    for fragment in fragments:
        assert fragment in err, err
    assert err.count("\n") == 1, "one clear message, not a traceback"
    assert not out.exists() or not any(out.iterdir()), "nothing may be written for bad input"
    return err


def first_case(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


def test_image_without_mask(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = first_case(masks)
    victim.unlink()
    expect_error(
        capsys, images, masks, tmp_path / "out", ErrorCode.MISSING_MASK, victim.stem, "has no mask"
    )


def test_mask_without_image(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = first_case(images)
    victim.unlink()
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.MISSING_IMAGE,
        victim.stem,
        "has no image",
    )


def test_shape_mismatch(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = sorted(masks.iterdir())[3]
    Image.fromarray(np.asarray(Image.open(victim))[:500]).save(victim)
    expect_error(
        capsys, images, masks, tmp_path / "out", ErrorCode.SHAPE_MISMATCH, victim.stem, "(500, 800)"
    )


def test_geometry_mismatch(tmp_path, capsys):
    images, masks = mr_nifti_cases(tmp_path / "data")
    victim = sorted(masks.iterdir())[2]
    img = nib.load(str(victim))
    shifted = img.affine.copy()
    shifted[:3, 3] += 10.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), str(victim))
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.GEOMETRY_MISMATCH,
        "brain1_z10",
        "affines differ",
    )


def test_unreadable_file(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = sorted(images.iterdir())[5]
    victim.write_bytes(b"\x89PNG truncated")
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.UNREADABLE,
        victim.stem,
        "cannot read image",
    )


def test_mask_with_non_integer_values(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = sorted(masks.iterdir())[1]
    soft = np.asarray(Image.open(victim)).astype(np.float32) * 0.5
    tifffile.imwrite(masks / f"{victim.stem}.tif", soft)
    victim.unlink()
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.MASK_NOT_INTEGER,
        victim.stem,
        "non-integer",
    )


def test_mask_with_out_of_range_values(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = sorted(masks.iterdir())[2]
    Image.fromarray(np.asarray(Image.open(victim)) * 255).save(victim)
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.MASK_OUT_OF_RANGE,
        victim.stem,
        "value 255",
        "0/1",
    )


def test_mask_value_beyond_the_stated_class_count(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = sorted(masks.iterdir())[2]
    Image.fromarray(np.asarray(Image.open(victim)) * 3).save(victim)
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.MASK_OUT_OF_RANGE,
        victim.stem,
        "num_classes is 2",
        extra=("--num-classes", "2"),
    )


def test_negative_mask_values(tmp_path, capsys):
    images, masks = mr_nifti_cases(tmp_path / "data")
    victim = sorted(masks.iterdir())[0]
    img = nib.load(str(victim))
    data = np.asarray(img.dataobj).astype(np.int16)
    data[0, 0, 0] = -1
    nib.save(nib.Nifti1Image(data, img.affine), str(victim))
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.MASK_OUT_OF_RANGE,
        victim.name.split(".")[0],
        "-1",
    )


def test_too_few_cases(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    for victim in sorted(images.iterdir())[3:]:
        victim.unlink()
        (masks / victim.name).unlink()
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.TOO_FEW_CASES,
        "found 3 cases",
        "at least 8",
    )


def test_empty_folders(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    expect_error(
        capsys,
        tmp_path / "images",
        tmp_path / "masks",
        tmp_path / "out",
        ErrorCode.EMPTY_FOLDER,
        "holds no image",
    )


def test_missing_folder(hc18_small, tmp_path, capsys):
    images, _ = hc18_small
    expect_error(
        capsys, images, tmp_path / "nowhere", tmp_path / "out", ErrorCode.NOT_A_FOLDER, "nowhere"
    )


def test_unsupported_extension(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    (images / "notes.txt").write_bytes(b"")
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.UNSUPPORTED_FORMAT,
        "notes.txt",
        ".nii.gz",
    )


def test_masks_without_any_foreground(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    for victim in masks.iterdir():
        Image.fromarray(np.zeros((540, 800), np.uint8)).save(victim)
    expect_error(
        capsys, images, masks, tmp_path / "out", ErrorCode.NO_FOREGROUND, "nothing to audit"
    )


def test_a_non_empty_output_folder_is_left_alone(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = run_cli(images, masks, out)
    assert rc == 2 and f"[{ErrorCode.OUTPUT_NOT_EMPTY}]" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_settings_exit_non_zero(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    rc = run_cli(images, masks, tmp_path / "out", "--size", "20")
    assert rc == 2 and "size must be >= 32" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    rc = run_cli(images, masks, tmp_path / "out", "--patch-size", "100")
    assert rc == 2 and "patch_size must be >= 32 and a multiple of 8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["image", "mask"])
def test_errors_name_the_first_bad_case_even_among_many(hc18_small, tmp_path, capsys, bad):
    images, masks = hc18_small
    folder = images if bad == "image" else masks
    for victim in sorted(folder.iterdir())[-2:]:
        shutil.move(victim, tmp_path / victim.name)
    code = ErrorCode.MISSING_IMAGE if bad == "image" else ErrorCode.MISSING_MASK
    expect_error(capsys, images, masks, tmp_path / "out", code, "1 more case has the same problem")


def test_two_files_for_one_case(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    victim = first_case(images)
    tifffile.imwrite(images / f"{victim.stem}.tif", np.asarray(Image.open(victim)))
    expect_error(
        capsys, images, masks, tmp_path / "out", ErrorCode.DUPLICATE_CASE, victim.stem, ".png and"
    )


def test_output_path_that_is_a_file(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    (tmp_path / "out").write_text("a file")
    assert run_cli(images, masks, tmp_path / "out") == 2
    assert f"[{ErrorCode.NOT_A_FOLDER}]" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file"


def test_2d_and_3d_cases_mixed(tmp_path, capsys):
    images, masks = mr_nifti_cases(tmp_path / "data")
    for folder, kind in ((images, "images"), (masks, "masks")):
        shutil.copy(HC18 / kind / "000_HC.png", folder / "zz.png")
    expect_error(
        capsys, images, masks, tmp_path / "out", ErrorCode.SHAPE_MISMATCH, "zz", "2D and 3D"
    )


def test_image_with_nan(tmp_path, capsys):
    images, masks = mr_nifti_cases(tmp_path / "data")
    victim = sorted(images.iterdir())[4]
    img = nib.load(str(victim))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[3, 3, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(victim))
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.IMAGE_NOT_FINITE,
        victim.name.split(".")[0],
    )


def test_four_dimensional_volume(tmp_path, capsys):
    images, masks = mr_nifti_cases(tmp_path / "data")
    victim = sorted(images.iterdir())[1]
    img = nib.load(str(victim))
    data = np.stack([np.asarray(img.dataobj)] * 2, axis=-1)
    nib.save(nib.Nifti1Image(data, img.affine), str(victim))
    expect_error(capsys, images, masks, tmp_path / "out", ErrorCode.UNREADABLE, "4D NIfTI")


def test_resume_without_a_checkpoint(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    expect_error(
        capsys,
        images,
        masks,
        tmp_path / "out",
        ErrorCode.CHECKPOINT_MISMATCH,
        "nothing to resume",
        extra=("--resume",),
    )


def test_resume_from_a_broken_checkpoint(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"not a checkpoint")
    assert run_cli(images, masks, out, "--resume") == 2
    err = capsys.readouterr().err
    assert f"[{ErrorCode.UNREADABLE}]" in err and "cannot read checkpoint" in err
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]


def test_cuda_asked_for_without_a_gpu(hc18_small, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error cannot occur")
    images, masks = hc18_small
    rc = run_cli(images, masks, tmp_path / "out", "--device", "cuda")
    assert rc == 2 and "no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
