"""Checking uploaded images and masks with the engine's own readers (``models.io``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.db.tables import Case
from app.errors import Invalid
from app.uploads import Incoming
from models import errors as input_errors
from models.errors import InputError
from models.io import read_image, read_mask


@dataclass(frozen=True)
class ImageInfo:
    shape: list[int]
    spacing: list[float]
    affine: list[list[float]]
    channels: int


def check_image(item: Incoming) -> ImageInfo:
    """Read an image as the audit will; refuse it (naming the file) if the audit could not."""
    try:
        loaded = read_image(item.written.path, case=item.case)
    except InputError as exc:
        raise Invalid(exc.code, str(exc), file=item.name) from None
    if not np.all(np.isfinite(loaded.array)):
        raise Invalid(
            input_errors.IMAGE_NOT_FINITE,
            f"{item.name}: the image holds NaN or infinite values",
            file=item.name,
        )
    geometry = loaded.geometry
    return ImageInfo(
        shape=[int(n) for n in geometry.shape],
        spacing=[float(s) for s in geometry.spacing],
        affine=np.asarray(geometry.affine, float).tolist(),
        channels=int(loaded.array.shape[0]),
    )


def check_mask(item: Incoming, case: Case) -> int:
    """Read a mask, check it lies on its case's grid and holds class indices; its largest one."""
    try:
        loaded = read_mask(item.written.path, case=item.case)
    except InputError as exc:
        raise Invalid(exc.code, str(exc), file=item.name) from None
    geometry = loaded.geometry
    if list(geometry.shape) != list(case.shape):
        raise Invalid(
            input_errors.SHAPE_MISMATCH,
            f"{item.name}: the mask is {tuple(geometry.shape)} but image {case.image.name} is "
            f"{tuple(case.shape)}",
            file=item.name,
        )
    if geometry.is_3d and not np.allclose(geometry.affine, case.affine, atol=1e-3):
        raise Invalid(
            input_errors.GEOMETRY_MISMATCH,
            f"{item.name}: the mask has the shape of image {case.image.name} but another "
            "position or spacing (affines differ): they do not lie on the same grid",
            file=item.name,
        )
    return _max_label(loaded.array, item.name)


def _max_label(mask: np.ndarray, name: str) -> int:
    if mask.dtype == bool:
        return int(mask.any())
    if not np.issubdtype(mask.dtype, np.integer) and (
        not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask))
    ):
        raise Invalid(
            input_errors.MASK_NOT_INTEGER,
            f"{name}: the mask holds non-integer values; a mask holds class indices 0..K-1",
            file=name,
        )
    if mask.size and mask.min() < 0:
        raise Invalid(
            input_errors.MASK_OUT_OF_RANGE,
            f"{name}: the mask holds the value {mask.min():g}; class indices start at 0",
            file=name,
        )
    return int(mask.max()) if mask.size else 0
