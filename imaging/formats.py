"""Reading and writing images and masks in their own file format and on their own grid.

PNG and TIFF (2D), JPEG (2D images only: it is lossy), NIfTI and NRRD (3D; 3D Slicer's
``case.seg.nrrd`` is the mask of ``case.nrrd``), MetaImage (``.mha``/``.mhd``, 2D or 3D,
``imaging.metaimage``). Images come back channel-first as float32; masks in their stored dtype.
DICOM lives in ``imaging.dicom``; ``imaging.write`` picks the writer.
"""

from __future__ import annotations

import copy
import struct
import warnings
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import nrrd
import numpy as np
import tifffile
from nibabel.spatialimages import SpatialImage
from PIL import Image

from imaging import __version__, layout, metaimage
from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry, Loaded, identity_affine

# Extension (lower case) -> format. ".nii.gz" and ".seg.nrrd" are matched as one extension.
FORMATS: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".mha": metaimage.FMT,
    ".mhd": metaimage.FMT,
    ".seg.nrrd": "nrrd",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
}


# The pixels PIL decodes without complaint (it refuses twice as many at open): the service's
# default max_image_pixels; create_app raises it to a larger setting (allow_pixels).
DEFAULT_MAX_PIXELS = 2**26
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
# NRRD header fields that point at data in another file (any file, on a server).
NRRD_DETACHED = ("data file", "datafile")


def allow_pixels(pixels: int) -> None:
    """Let PIL decode images of ``pixels`` without complaint (its limit is process-wide, so
    it is only ever raised: a lower limit of one service is its own upload check's to keep).
    """
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = pixels


def split_name(path: Path) -> tuple[str, str]:
    """``case.nii.gz`` -> (``case``, ``.nii.gz``), ``case.seg.nrrd`` -> (``case``,
    ``.seg.nrrd``); the extension is lower-cased.
    """
    name = path.name
    for double in DOUBLE_EXTENSIONS:
        if name.lower().endswith(double) and len(name) > len(double):
            return name[: -len(double)], double
    return path.stem, path.suffix.lower()


DOUBLE_EXTENSIONS = (".nii.gz", ".seg.nrrd")
# Data files that a .mhd header names; they belong to it and are not cases of their own.
METAIMAGE_DATA = (".raw", ".zraw")
# Formats that cannot hold a mask: a lossy one changes class indices at every edge.
IMAGE_ONLY = ("jpeg",)
# Formats whose files carry no physical spacing (their pixels are read as unit spacing).
FLAT_FORMATS = ("png", "jpeg", "tiff")


def label_extension(image: Path) -> str:
    """The extension of a label map written for the image ``image``: its own, PNG for JPEG."""
    return ".png" if format_of(image) in IMAGE_ONLY else split_name(image)[1]


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
    if fmt == "jpeg":
        with Image.open(path) as opened:
            opened.load()
            im = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")  # CMYK, YCCK
            return _flat(np.asarray(im), fmt)
    if fmt == metaimage.FMT:
        return metaimage.read(path)
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


def header_shape(path: Path) -> tuple[int, ...]:
    """The grid a file declares, read from its header without decoding any pixel data: 2D
    ``(H, W)`` (a multi-page TIFF ``(P, H, W)``), 3D ``(X, Y, Z)`` (and any further axes).
    Channels are left out. Raises ``InputError`` for a file to refuse as it is: one PIL itself
    refuses by its size (image_too_large), a header that declares no pixels, an NRRD whose data
    lies in another file (unreadable_file), a ``.mhd`` whose voxels do (unsupported_format);
    any other exception where the header cannot be read at all (the reader then says why).
    """
    fmt = format_of(path)
    if fmt == "png" and (size := _png_size(path)) is not None:
        shape: tuple[int, ...] = size
    elif fmt == "png":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as opened:  # reads the header only
                    width, height = opened.size
            except Image.DecompressionBombError as exc:
                raise InputError(ErrorCode.IMAGE_TOO_LARGE, str(exc)) from None
        shape = (height, width)
    elif fmt == "tiff":
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(ErrorCode.UNREADABLE, "the TIFF holds no image")
            shape = tuple(int(n) for n in tif.series[0].shape)
        if len(shape) == 3 and shape[-1] in (3, 4):
            shape = shape[:2]
    elif fmt == "nifti":
        img = cast(SpatialImage, nib.load(str(path)))  # lazy: the header only
        shape = tuple(int(n) for n in img.shape)
    elif fmt == "nrrd":
        header = nrrd.read_header(str(path))
        if any(key in header for key in NRRD_DETACHED):
            raise InputError(
                ErrorCode.UNREADABLE,
                "a detached NRRD header (its data in another file); send one .nrrd",
            )
        shape = tuple(int(n) for n in header["sizes"])
    elif fmt == metaimage.FMT:
        try:
            shape = metaimage.header_shape(path)
        except metaimage.DetachedData as exc:
            raise InputError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from None
    else:
        raise ValueError(f"unsupported extension '{split_name(path)[1]}'")
    if not shape or min(shape) < 1:
        raise InputError(ErrorCode.UNREADABLE, f"the header declares no pixels (shape {shape})")
    return shape


def _png_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` from a PNG's IHDR chunk (always first), else None."""
    with path.open("rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


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


def reason(exc: BaseException, path: Path) -> str:
    """A reader's error message with the file's path (readers quote it) cut to its name."""
    text = str(exc)
    for full in sorted({str(path), str(path.absolute()), str(path.resolve())}, key=len)[::-1]:
        text = text.replace(full, path.name)
    return text


def read_image(path: Path, *, case: str) -> Loaded:
    """Read an image as float32 ``(C, *spatial)``; RGBA loses alpha, palette becomes RGB."""
    try:
        array, geometry, channels_last = _read_raw(path, is_mask=False)
    except Exception as exc:  # any reader failure is the same user-facing problem
        raise InputError(
            ErrorCode.UNREADABLE, f"cannot read image {path.name}: {reason(exc, path)}", case=case
        ) from exc
    return Loaded(_channels_first(array, channels_last), geometry)


def _channels_first(array: np.ndarray, channels_last: bool) -> np.ndarray:
    if channels_last:
        array = array[..., :3] if array.shape[-1] == 4 else array
        return np.moveaxis(array, -1, 0).astype(np.float32)
    return array[None].astype(np.float32)


def read_mask(path: Path, *, case: str) -> Loaded:
    """Read a mask as ``(*spatial)`` in its stored dtype (values checked by the caller)."""
    if format_of(path) in IMAGE_ONLY:
        raise InputError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"mask {path.name} is a JPEG: JPEG is lossy and changes the class indices along "
            "every edge; save masks as PNG, TIFF, NIfTI, NRRD or MetaImage",
            case=case,
        )
    try:
        array, geometry, channels_last = _read_raw(path, is_mask=True)
    except Exception as exc:
        raise InputError(
            ErrorCode.UNREADABLE, f"cannot read mask {path.name}: {reason(exc, path)}", case=case
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
    if extension == ".seg.nrrd":  # 3D Slicer would open a .seg.nrrd as a segmentation
        return ".nrrd", geometry
    if not geometry.is_dicom:
        return extension, geometry
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ geometry.affine  # DICOM's LPS -> NIfTI's RAS
    return ".nii.gz", Geometry(geometry.shape, geometry.spacing, ras, "nifti")


# What a written file says it is, after "segaudit <version>" (NIfTI descrip, NRRD content).
OUTPUT_NAMES = {
    layout.CLEANSED: "cleansed mask",
    layout.PSEUDO: "pseudo label",
    layout.ISSUE_MAPS: "issue map",
}


def made_by(kind: str) -> str:
    """The provenance line of an output of ``kind`` (``imaging.layout``'s folder names)."""
    return f"segaudit {__version__} {OUTPUT_NAMES.get(kind, 'output')}"


def _is_segment_key(key: str) -> bool:
    """3D Slicer's segmentation fields (``Segment0_Name``, ``Segmentation_...``)."""
    return key.startswith(("Segment", "Segmentation"))


def write_file(path: Path, array: np.ndarray, geometry: Geometry, *, kind: str = "") -> None:
    """Write ``array`` (same spatial shape as ``geometry``) in the file format of ``path``.

    NIfTI and NRRD keep the input's header for its geometry, but say that segaudit made the file
    (``made_by(kind)``) instead of what the input said about itself; an issue map (``kind``
    ``imaging.layout.ISSUE_MAPS``) drops the input's label meaning (NIfTI intent, Slicer
    segment fields), so that no viewer takes it for a segmentation.
    """
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape}")
    fmt = format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        Image.fromarray(array).save(path)
    elif fmt == "tiff":
        tifffile.imwrite(path, array)
    elif fmt == metaimage.FMT:
        metaimage.write(path, array, geometry)
    elif fmt == "nifti":
        header = geometry.header.copy() if geometry.header is not None else None
        # nibabel leaves these three unannotated.
        img = nib.Nifti1Image(array, geometry.affine, header=header)  # type: ignore[no-untyped-call]
        img.set_data_dtype(array.dtype)  # type: ignore[no-untyped-call]
        img.header.set_slope_inter(1.0, 0.0)  # type: ignore[no-untyped-call]
        img.header["descrip"] = made_by(kind).encode()[:79]
        img.header["aux_file"] = b""
        img.header.extensions.clear()  # the input's (DICOM, JSON sidecar ...) are not ours
        if kind == layout.ISSUE_MAPS:
            img.header.set_intent("none")  # type: ignore[no-untyped-call]
        nib.save(img, str(path))
    elif fmt == "nrrd":
        header = copy.deepcopy(geometry.header) if geometry.header is not None else {}
        for key in ("type", "sizes", "endian", "data file", "datafile", "byte skip", "line skip"):
            header.pop(key, None)
        header["encoding"] = "gzip"
        header["content"] = made_by(kind)
        if kind == layout.ISSUE_MAPS:
            header = {k: v for k, v in header.items() if not _is_segment_key(k)}
        nrrd.write(str(path), array, header=header)
    else:
        raise ValueError(f"cannot write '{path.name}': unsupported extension")
