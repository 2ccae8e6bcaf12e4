"""Checking uploaded images and masks with the engine's own readers and rules
(``imaging.formats``, ``imaging.checks``), so that what the service accepts the audit can read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.db.tables import Case
from app.errors import ServiceError
from app.uploads import Incoming
from imaging import checks
from imaging.classes import mask_values
from imaging.errors import InputError
from imaging.formats import read_image, read_mask


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
        checks.check_image_values(loaded.array, name=item.name)
    except InputError as exc:
        raise ServiceError.invalid_input(exc, file=item.shown) from None
    geometry = loaded.geometry
    return ImageInfo(
        shape=[int(n) for n in geometry.shape],
        spacing=[float(s) for s in geometry.spacing],
        affine=np.asarray(geometry.affine, float).tolist(),
        channels=int(loaded.array.shape[0]),
    )


@dataclass(frozen=True)
class MaskInfo:
    max_label: int  # the largest class index
    values: list[int]  # the foreground values present, ascending


def check_mask(item: Incoming, case: Case) -> MaskInfo:
    """Read a mask, check it lies on its case's grid and holds class indices; what it holds."""
    try:
        loaded = read_mask(item.written.path, case=item.case)
        checks.check_same_grid(
            tuple(case.shape),
            np.asarray(case.affine, float),
            loaded.geometry,
            image_name=case.image.name,
            mask_name=item.name,
        )
        top = checks.check_mask_values(loaded.array, name=item.name)
        return MaskInfo(top, mask_values(loaded.array))
    except InputError as exc:
        raise ServiceError.invalid_input(exc, file=item.shown) from None
