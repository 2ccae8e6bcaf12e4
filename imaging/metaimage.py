"""MetaImage files (``.mha``, or ``.mhd`` with its ``.raw``/``.zraw`` data file), through
SimpleITK.

Arrays follow ``imaging.geometry``'s order: 2D ``(H, W)`` (``(H, W, C)`` for colour), 3D
``(X, Y, Z)``. The affine maps voxel indices to the file's physical space (LPS, as ITK writes
it): direction times spacing, then the origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK

from imaging.geometry import Geometry

sitk: Any = SimpleITK  # SimpleITK's functions carry no annotations

FMT = "metaimage"


def read(path: Path) -> tuple[np.ndarray, Geometry, bool]:
    """(array, geometry, channels_last) of a MetaImage file; raises ``ValueError`` on what it
    cannot represent (4D, or vector voxels in 3D).
    """
    image = sitk.ReadImage(str(path))
    dim, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X) or (Y, X), components last
    if dim not in (2, 3) or (dim == 3 and components > 1):
        raise ValueError(
            f"{dim}D MetaImage with {components} components per voxel is not supported "
            "(2D grey or colour, or 3D grey)"
        )
    spacing = np.asarray(image.GetSpacing(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(dim, dim)
    affine = np.eye(4)
    if dim == 3:
        array = np.ascontiguousarray(array.transpose(2, 1, 0))  # -> (X, Y, Z)
        affine[:3, :3] = direction @ np.diag(spacing)
        affine[:3, 3] = image.GetOrigin()
        geometry = Geometry(array.shape, tuple(float(s) for s in spacing), affine, FMT)
        return array, geometry, False
    # 2D: rows run along ITK's y, columns along its x.
    affine[:2, :2] = (direction @ np.diag(spacing))[::-1, ::-1]
    affine[:2, 3] = np.asarray(image.GetOrigin(), float)[::-1]
    geometry = Geometry(array.shape[:2], (float(spacing[1]), float(spacing[0])), affine, FMT)
    return array, geometry, components > 1


def write(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    """Write ``array`` on ``geometry``'s grid (a ``.mhd`` gets its data file beside it)."""
    affine = np.asarray(geometry.affine, float)
    if array.ndim == 3:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        image.SetSpacing([float(s) for s in spacing])
        image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
        image.SetOrigin([float(v) for v in affine[:3, 3]])
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        matrix = affine[:2, :2][::-1, ::-1]  # back to ITK's (x, y)
        spacing = np.linalg.norm(matrix, axis=0)
        image.SetSpacing([float(s) for s in spacing])
        image.SetDirection([float(v) for v in (matrix / spacing).ravel()])
        image.SetOrigin([float(v) for v in affine[:2, 3][::-1]])
    sitk.WriteImage(image, str(path), useCompression=True)


# How much of a file its text header may take (a .mha's voxels follow it in the same file).
HEADER_BYTES = 64 * 1024
# Said wherever one file per image is required (uploads) and a .mhd's voxels lie elsewhere.
ONE_FILE = (
    "send the image as .mha (header and voxels in one file), e.g. SimpleITK.WriteImage("
    "SimpleITK.ReadImage('case.mhd'), 'case.mha')"
)


def read_header(path: Path) -> dict[str, str]:
    """The ``Key = Value`` fields of a MetaImage header, up to ``ElementDataFile`` (its last);
    raises ``ValueError`` where there is no such header.
    """
    with path.open("rb") as f:
        text = f.read(HEADER_BYTES).decode("latin-1")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            break
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields
    raise ValueError("no MetaImage header (ElementDataFile not found)")


def header_shape(path: Path) -> tuple[int, ...]:
    """The grid a MetaImage header declares, in ``imaging.geometry``'s order (2D ``(H, W)``,
    3D ``(X, Y, Z)``), channels left out; raises ``ValueError`` where the header cannot be
    read, and ``DetachedData`` where the voxels are in another file.
    """
    fields = read_header(path)
    data = fields["ElementDataFile"]
    if data.upper() != "LOCAL":
        raise DetachedData(f"its voxels are in another file ({data}); {ONE_FILE}")
    sizes = tuple(int(n) for n in fields.get("DimSize", "").split())
    if len(sizes) == 2:
        return sizes[1], sizes[0]  # ITK's (x, y) -> (rows, columns)
    return sizes


class DetachedData(ValueError):
    """A ``.mhd`` whose voxels are in a data file beside it, not in the header's file."""
