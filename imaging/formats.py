"""Reading and writing images and masks in their own file format and on their own grid.

PNG and TIFF (2D), NIfTI and NRRD (3D). Images come back channel-first as float32; masks in
their stored dtype. DICOM lives in ``imaging.dicom``; ``imaging.write`` picks the writer.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import nrrd
import numpy as np
import tifffile
from nibabel.spatialimages import SpatialImage
from PIL import Image

from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry, Loaded, identity_affine

# Extension (lower case) -> format. ".nii.gz" is matched before ".gz" would be.
FORMATS: dict[str, str] = {
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
}


def split_name(path: Path) -> tuple[str, str]:
    """``case.nii.gz`` -> (``case``, ``.nii.gz``); the extension is lower-cased."""
    name = path.name
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")], ".nii.gz"
    return path.stem, path.suffix.lower()


def format_of(path: Path) -> str | None:
    return FORMATS.get(split_name(path)[1])


def _flat(array: np.ndarray, fmt: str) -> tuple[np.ndarray, Geometry, bool]:
    """A 2D file's array ``(H, W)`` or ``(H, W, C)``: unit spacing, channels last when 3D."""
    geometry = Geometry(array.shape[:2], (1.0, 1.0), identity_affine((1.0, 1.0)), fmt)
    return array, geometry, array.ndim == 3


def _read_raw(path: Path, *, is_mask: bool) -> tuple[np.ndarray, Geometry, bool]:
    """Return (array, geometry, channels_last) for any supported file; raises on failure.

    A palette PNG is an index map: kept as indices for a mask, turned into RGB for an image.
    """
    fmt = format_of(path)
    if fmt == "png":
        with Image.open(path) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode in ("LA", "PA") or (im.mode == "P" and not is_mask):
                im = im.convert("RGBA")
            return _flat(np.asarray(im), fmt)
    if fmt == "tiff":
        array = tifffile.imread(path)
        if array.ndim == 3 and array.shape[-1] not in (3, 4):
            raise ValueError(f"multi-page TIFF {array.shape} is not supported; use NIfTI or NRRD")
        return _flat(array, fmt)
    if fmt == "nifti":
        # A .nii/.nii.gz file loads as a NIfTI-1 or NIfTI-2 image: a spatial image with an
        # affine and zooms (nib.load is typed as the base FileBasedImage).
        img = cast(SpatialImage, nib.load(str(path)))
        array = np.asanyarray(img.dataobj)
        while array.ndim > 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ValueError(f"{array.ndim}D NIfTI {array.shape} is not supported (3D only)")
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
        geometry = Geometry(array.shape, spacing, np.asarray(img.affine, float), fmt, img.header)
        return array, geometry, False
    if fmt == "nrrd":
        array, header = nrrd.read(str(path))
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ValueError(f"{array.ndim}D NRRD {array.shape} is not supported (3D only)")
        affine, spacing = _nrrd_affine(header)
        geometry = Geometry(array.shape, spacing, affine, fmt, header)
        return array, geometry, False
    raise ValueError(f"unsupported extension '{split_name(path)[1]}'")


def _nrrd_affine(header: dict[str, Any]) -> tuple[np.ndarray, tuple[float, ...]]:
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(d, float) for d in directions if d is not None]
        matrix = np.asarray(rows, float)
        if matrix.shape == (3, 3) and np.all(np.isfinite(matrix)):
            affine[:3, :3] = matrix.T
            origin = header.get("space origin")
            if origin is not None:
                affine[:3, 3] = np.asarray(origin, float)
            spacing = tuple(float(np.linalg.norm(row)) for row in matrix)
            return affine, spacing
    spacings = header.get("spacings")
    spacing = tuple(float(s) for s in spacings) if spacings is not None else (1.0, 1.0, 1.0)
    return identity_affine(spacing), spacing


def read_image(path: Path, *, case: str) -> Loaded:
    """Read an image as float32 ``(C, *spatial)``; RGBA loses alpha, palette becomes RGB."""
    try:
        array, geometry, channels_last = _read_raw(path, is_mask=False)
    except Exception as exc:  # any reader failure is the same user-facing problem
        raise InputError(
            ErrorCode.UNREADABLE, f"cannot read image {path.name}: {exc}", case=case
        ) from exc
    return Loaded(_channels_first(array, channels_last), geometry)


def _channels_first(array: np.ndarray, channels_last: bool) -> np.ndarray:
    if channels_last:
        array = array[..., :3] if array.shape[-1] == 4 else array
        return np.moveaxis(array, -1, 0).astype(np.float32)
    return array[None].astype(np.float32)


def read_mask(path: Path, *, case: str) -> Loaded:
    """Read a mask as ``(*spatial)`` in its stored dtype (values checked by the caller)."""
    try:
        array, geometry, channels_last = _read_raw(path, is_mask=True)
    except Exception as exc:
        raise InputError(
            ErrorCode.UNREADABLE, f"cannot read mask {path.name}: {exc}", case=case
        ) from exc
    if channels_last:
        if array.shape[-1] == 4:
            array = array[..., :3]
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(array.shape[-1])):
            raise InputError(
                ErrorCode.MASK_NOT_INTEGER,
                f"mask {path.name} is a colour image; a mask must hold one class index per "
                "pixel (0 = background, 1..K-1 = classes)",
                case=case,
            )
        array = array[..., 0]
    return Loaded(np.ascontiguousarray(array), geometry)


def output_extension(mask: Path, geometry: Geometry) -> str:
    """The extension of label outputs written in the format of ``mask``."""
    return ".dcm" if geometry.is_dicom else split_name(mask)[1]


def issue_map_target(extension: str, geometry: Geometry) -> tuple[str, Geometry]:
    """Extension and geometry of an issue map (an image, not a label object): NIfTI for DICOM."""
    if not geometry.is_dicom:
        return extension, geometry
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ geometry.affine  # DICOM's LPS -> NIfTI's RAS
    return ".nii.gz", Geometry(geometry.shape, geometry.spacing, ras, "nifti")


def write_file(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    """Write ``array`` (same spatial shape as ``geometry``) in the file format of ``path``."""
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape}")
    fmt = format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        Image.fromarray(array).save(path)
    elif fmt == "tiff":
        tifffile.imwrite(path, array)
    elif fmt == "nifti":
        header = geometry.header.copy() if geometry.header is not None else None
        # nibabel leaves these three unannotated.
        img = nib.Nifti1Image(array, geometry.affine, header=header)  # type: ignore[no-untyped-call]
        img.set_data_dtype(array.dtype)  # type: ignore[no-untyped-call]
        img.header.set_slope_inter(1.0, 0.0)  # type: ignore[no-untyped-call]
        nib.save(img, str(path))
    elif fmt == "nrrd":
        header = copy.deepcopy(geometry.header) if geometry.header is not None else {}
        for key in ("type", "sizes", "endian", "data file", "datafile", "byte skip", "line skip"):
            header.pop(key, None)
        header["encoding"] = "gzip"
        nrrd.write(str(path), array, header=header)
    else:
        raise ValueError(f"cannot write '{path.name}': unsupported extension")
