"""The rules for valid input, written once: the audit, the command line and the service's upload
checks all call these. Each raises an ``InputError`` with its code and a sentence that names
the file (and the case, where there is one).
"""

from __future__ import annotations

import math

import numpy as np

from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry

# How far two affines may differ (per element) and still describe one grid.
AFFINE_TOLERANCE = 1e-3


def check_image_size(
    shape: tuple[int, ...], *, name: str, max_pixels: int, max_voxels: int, setting: str = ""
) -> None:
    """An image's declared grid (``imaging.formats.header_shape``: 2D ``(H, W)``, 3D
    ``(X, Y, Z)``) must hold at most ``max_pixels`` (2D) or ``max_voxels`` (3D and more)
    elements, checked before it is decoded. ``setting`` names the limits, for the message.
    """
    count = math.prod(shape)
    limit, unit = (max_pixels, "pixels") if len(shape) <= 2 else (max_voxels, "voxels")
    if count <= limit:
        return
    where = f" ({setting}{unit.upper()})" if setting else ""
    size = " x ".join(str(n) for n in shape)
    raise InputError(
        ErrorCode.IMAGE_TOO_LARGE,
        f"{name}: the image is {size} = {count} {unit}, more than the limit of {limit}{where}; "
        "downsample or crop it",
    )


def check_image_values(image: np.ndarray, *, name: str, case: str | None = None) -> None:
    """An image ``(C, *spatial)`` must hold finite numbers only."""
    if not np.all(np.isfinite(image)):
        raise InputError(
            ErrorCode.IMAGE_NOT_FINITE, f"image {name} holds NaN or infinite values", case=case
        )


def check_mask_values(
    mask: np.ndarray,
    *,
    name: str,
    case: str | None = None,
    limit: int | None = None,
    explicit: bool = False,
) -> int:
    """A mask must hold class indices ``0..limit-1`` (any integer type, or integral floats);
    returns its largest value. ``limit`` None checks the lower bound only; ``explicit`` says the
    limit is the user's ``num_classes`` rather than the inferred maximum.
    """
    if mask.dtype == bool:
        return int(mask.any())
    if not np.issubdtype(mask.dtype, np.integer) and (
        not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask))
    ):
        raise InputError(
            ErrorCode.MASK_NOT_INTEGER,
            f"mask {name} holds non-integer values; a mask must hold class indices 0..K-1",
            case=case,
        )
    if mask.size == 0:
        raise InputError(ErrorCode.UNREADABLE, f"mask {name} is empty (no pixels)", case=case)
    low, high = mask.min(), mask.max()
    if low < 0:
        raise InputError(
            ErrorCode.MASK_OUT_OF_RANGE,
            f"mask {name} holds the value {low:g}; masks must hold class indices 0..K-1 "
            "(class indices start at 0)",
            case=case,
        )
    if limit is not None:
        check_label_limit(int(high), limit=limit, explicit=explicit, name=name, case=case)
    return int(high)


def check_label_limit(
    max_label: int, *, limit: int, explicit: bool, name: str, case: str | None = None
) -> None:
    """A mask's largest class must be below ``limit`` (see ``check_mask_values``)."""
    if max_label < limit:
        return
    hint = (
        f"num_classes is {limit}"
        if explicit
        else f"more than {limit} classes is taken as a mis-encoded mask "
        "(a 0/255 mask must be saved as 0/1, or set num_classes)"
    )
    raise InputError(
        ErrorCode.MASK_OUT_OF_RANGE,
        f"mask {name} holds the value {max_label:g}; masks must hold class indices 0..K-1 ({hint})",
        case=case,
    )


def check_same_grid(
    image_shape: tuple[int, ...],
    image_affine: np.ndarray,
    mask: Geometry,
    *,
    image_name: str,
    mask_name: str,
    case: str | None = None,
) -> None:
    """A mask must lie on its image's grid: the same spatial shape and, in 3D, the same affine."""
    if tuple(image_shape) != tuple(mask.shape):
        raise InputError(
            ErrorCode.SHAPE_MISMATCH,
            f"image {image_name} is {tuple(image_shape)} but mask {mask_name} is "
            f"{tuple(mask.shape)}",
            case=case,
        )
    affine = np.asarray(image_affine, float)
    if mask.is_3d and not np.allclose(affine, mask.affine, atol=AFFINE_TOLERANCE):
        corners = np.array([[0, 0, 0, 1], [*(np.asarray(mask.shape) - 1), 1]]).T
        apart = np.linalg.norm((affine - mask.affine) @ corners, axis=0).max()
        raise InputError(
            ErrorCode.GEOMETRY_MISMATCH,
            f"image {image_name} and mask {mask_name} have the same shape but different "
            f"positions or spacing (affines differ; corner voxels {apart:.2f} mm apart): they "
            "do not lie on the same grid",
            case=case,
        )


def check_case_count(count: int, *, min_cases: int, what: str = "found") -> None:
    """The label filter needs a population: at least ``min_cases`` cases."""
    if count < min_cases:
        raise InputError(
            ErrorCode.TOO_FEW_CASES,
            f"{what} {count} cases; the label filter needs at least {min_cases} (min_cases) to "
            "tell clean labels from noisy ones",
        )


def check_foreground(largest_label: int) -> None:
    """At least one mask must hold foreground."""
    if largest_label == 0:
        raise InputError(
            ErrorCode.NO_FOREGROUND,
            "no mask holds any foreground (all values are 0): nothing to audit",
        )
