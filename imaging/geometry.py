"""Where an array lies: its grid (shape, spacing, affine) and what a writer needs to put an
output back on it.

Arrays keep the file's axis order: 2D files are ``(H, W)``, 3D files ``(X, Y, Z)`` as stored
(slices run along the last axis). Images are channel-first, ``(C, *spatial)``; masks
``(*spatial)`` in their stored dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Geometry.fmt of masks read from DICOM (imaging.dicom): written back as DICOM objects (.dcm).
DICOM_SEG = "dicom-seg"
DICOM_RTSTRUCT = "dicom-rtstruct"
DICOM_MASKS = (DICOM_SEG, DICOM_RTSTRUCT)


@dataclass(frozen=True)
class Geometry:
    """Where an array lies: spatial shape, spacing (mm where the file says), 4x4 affine."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray = field(compare=False, repr=False)
    fmt: str = "png"
    header: Any = field(default=None, compare=False, repr=False)

    @property
    def is_3d(self) -> bool:
        return len(self.shape) == 3

    @property
    def is_dicom(self) -> bool:
        return self.fmt in DICOM_MASKS


@dataclass(frozen=True)
class Loaded:
    """An array read from a file, with its geometry."""

    array: np.ndarray
    geometry: Geometry


def identity_affine(spacing: tuple[float, ...]) -> np.ndarray:
    """A 4x4 affine that scales each axis by its spacing and neither turns nor moves it."""
    affine = np.eye(4)
    for axis, step in enumerate(spacing):
        affine[axis, axis] = step
    return affine


def label_dtype(num_classes: int) -> np.dtype[Any]:
    """The smallest unsigned type that holds class indices ``0..num_classes-1``."""
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.uint16)
