"""The input rules, written once and used by the engine, the CLI and the service's uploads."""

from __future__ import annotations

import numpy as np
import pytest

from imaging import checks
from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry, identity_affine


def _code(call, *args, **kwargs) -> ErrorCode:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value.code


def test_mask_values_return_the_largest_class():
    assert checks.check_mask_values(np.array([[0, 2], [1, 0]], np.uint8), name="m.png") == 2
    assert checks.check_mask_values(np.array([[0.0, 1.0]]), name="m.nii.gz") == 1
    assert checks.check_mask_values(np.zeros((2, 2), bool), name="m.png") == 0


@pytest.mark.parametrize(
    ("mask", "limit", "code"),
    [
        (np.array([[0.0, 0.5]]), None, ErrorCode.MASK_NOT_INTEGER),
        (np.array([[0.0, np.nan]]), None, ErrorCode.MASK_NOT_INTEGER),
        (np.array([[-1, 0]]), None, ErrorCode.MASK_OUT_OF_RANGE),
        (np.array([[0, 255]], np.uint8), 32, ErrorCode.MASK_OUT_OF_RANGE),
        (np.zeros((0, 3), np.uint8), None, ErrorCode.UNREADABLE),
    ],
)
def test_bad_mask_values_are_refused(mask, limit, code):
    assert _code(checks.check_mask_values, mask, name="m.png", limit=limit) == code


def test_a_limit_names_its_origin():
    with pytest.raises(InputError, match="num_classes is 3"):
        checks.check_label_limit(3, limit=3, explicit=True, name="m.png", case="c1")
    with pytest.raises(InputError, match="a 0/255 mask must be saved as 0/1") as info:
        checks.check_label_limit(255, limit=32, explicit=False, name="m.png", case="c1")
    assert info.value.case == "c1" and str(info.value).startswith("case 'c1': mask m.png")


def test_the_grid_must_match():
    affine = identity_affine((1.0, 1.0, 2.0))
    mask = Geometry((4, 4, 3), (1.0, 1.0, 2.0), affine, "nifti")
    checks.check_same_grid((4, 4, 3), affine, mask, image_name="i", mask_name="m")
    assert (
        _code(checks.check_same_grid, (4, 4, 2), affine, mask, image_name="i", mask_name="m")
        == ErrorCode.SHAPE_MISMATCH
    )
    moved = affine.copy()
    moved[0, 3] = 5.0
    with pytest.raises(InputError, match="corner voxels 5.00 mm apart") as info:
        checks.check_same_grid((4, 4, 3), moved, mask, image_name="i", mask_name="m")
    assert info.value.code == ErrorCode.GEOMETRY_MISMATCH


def test_images_counts_and_foreground():
    assert (
        _code(checks.check_image_values, np.array([[np.inf]]), name="i.png")
        == ErrorCode.IMAGE_NOT_FINITE
    )
    checks.check_case_count(8, min_cases=8)
    assert _code(checks.check_case_count, 7, min_cases=8) == ErrorCode.TOO_FEW_CASES
    assert _code(checks.check_foreground, 0) == ErrorCode.NO_FOREGROUND


def test_codes_are_their_wire_values():
    assert (
        ErrorCode.UNREADABLE == "unreadable_file" and f"{ErrorCode.UNREADABLE}" == "unreadable_file"
    )
    assert len({c.value for c in ErrorCode}) == len(ErrorCode)
