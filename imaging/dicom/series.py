"""DICOM image series: instances grouped by UID into one volume, with the grid they lie on.

A series becomes an array ``(X, Y, Z)``: X runs along a row (the column index), Y down the
columns (the row index) and Z through the slices, ordered by position along the slice normal
(row direction x column direction), never by file name or instance number. ``affine`` maps
``(x, y, z, 1)`` to patient coordinates in millimetres (DICOM's LPS frame), the convention of
NRRD files in ``imaging.formats``. Single-frame instances and enhanced multi-frame instances
(per-frame functional groups) are read the same way, frame by frame; every compressed transfer
syntax that pydicom's pixel handlers decode (RLE, JPEG, JPEG-LS, JPEG 2000) is read, and the
modality rescale (slope and intercept) is applied.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID

from imaging.dicom.source import DicomObject, Source
from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry

# Objects that carry no image to audit, whatever pixel data or geometry they hold.
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTDOSE", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "DOC", "PLAN"}
)


def tolerance_mm(spacing: tuple[float, ...]) -> float:
    """How far two positions may differ and still be the same grid point: 5% of a voxel."""
    return max(1e-3, 0.05 * min(spacing))


@dataclass(frozen=True)
class Plane:
    """One 2D frame of a series: a single-frame instance or one frame of a multi-frame one."""

    source: Source
    sop_instance_uid: str
    frame: int | None  # 1-based frame number in a multi-frame instance
    position: np.ndarray  # (3,) Image Position (Patient), mm
    orientation: np.ndarray  # (6,) row direction then column direction cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    rows: int
    cols: int
    rescale: tuple[float, float] | None  # (slope, intercept) of a multi-frame's functional groups


@dataclass
class Series:
    """One image series, its planes sorted along the slice normal, and its grid."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int | None
    description: str
    modality: str
    planes: list[Plane]
    headers: dict[str, Dataset]  # SOP Instance UID -> header (no pixels), in first-plane order
    affine: np.ndarray  # (4, 4) voxel (x, y, z) -> LPS mm

    @property
    def rows(self) -> int:
        return self.planes[0].rows

    @property
    def cols(self) -> int:
        return self.planes[0].cols

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.cols, self.rows, len(self.planes))

    @property
    def spacing(self) -> tuple[float, float, float]:
        x, y, z = (float(np.linalg.norm(self.affine[:3, axis])) for axis in range(3))
        return x, y, z

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID."""
        return describe(self.series_uid, next(iter(self.headers.values())))

    def geometry(self, fmt: str = "dicom", header: object = None) -> Geometry:
        return Geometry(self.shape, self.spacing, self.affine.copy(), fmt, header or self)

    def index_of(self, sop_instance_uid: str, frame: int | None = None) -> int | None:
        """The slice index of an instance (and frame), or None when it is not in the series."""
        for index, plane in enumerate(self.planes):
            if plane.sop_instance_uid == sop_instance_uid and (
                frame is None or plane.frame in (None, frame)
            ):
                return index
        return None

    @functools.cached_property
    def positions(self) -> np.ndarray:
        """``(Z, 3)`` Image Position (Patient) of every slice."""
        return np.stack([p.position for p in self.planes])

    def nearest(self, position: np.ndarray) -> tuple[int, float]:
        """The slice index whose origin is nearest ``position``, and the distance in mm."""
        distances = np.linalg.norm(self.positions - position, axis=1)
        index = int(np.argmin(distances))
        return index, float(distances[index])

    def read(self, *, case: str | None = None) -> np.ndarray:
        """The volume ``(X, Y, Z)`` as float32, rescaled to modality units (HU for CT)."""
        volume = np.zeros(self.shape, dtype=np.float32)
        by_source: dict[Source, list[int]] = defaultdict(list)
        for index, plane in enumerate(self.planes):
            by_source[plane.source].append(index)
        for source, indices in by_source.items():
            ds = source.dataset(pixels=True, case=case)
            try:
                pixels = ds.pixel_array
            except Exception as exc:  # every decoder failure is the same user-facing problem
                syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
                name = getattr(syntax, "name", syntax)
                raise InputError(
                    ErrorCode.UNREADABLE,
                    f"cannot decode the pixel data of {source} ({name}): {exc}",
                    case=case,
                ) from exc
            for index in indices:
                plane = self.planes[index]
                frame = pixels if plane.frame is None else _frame(pixels, plane.frame, ds)
                if frame.shape != (plane.rows, plane.cols):
                    raise InputError(
                        ErrorCode.SERIES_INCONSISTENT,
                        f"{source} holds a {frame.shape} frame where {plane.rows}x{plane.cols} "
                        "pixels are declared; colour or malformed images cannot be audited",
                        case=case,
                    )
                volume[:, :, index] = _rescaled(frame, plane, ds).T
        return volume


def _frame(pixels: np.ndarray, number: int, ds: Dataset) -> np.ndarray:
    return pixels if int(ds.get("NumberOfFrames", 1) or 1) == 1 else pixels[number - 1]


def _rescaled(frame: np.ndarray, plane: Plane, ds: Dataset) -> np.ndarray:
    if plane.rescale is None:
        return np.asarray(apply_modality_lut(frame, ds), dtype=np.float32)
    slope, intercept = plane.rescale
    return frame.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _group_item(ds: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """A functional group macro for one frame: its per-frame item, else the shared one."""
    for groups_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(groups_name)
        if not groups:
            continue
        item = groups[frame_index] if groups_name.startswith("PerFrame") else groups[0]
        if item is not None and sequence in item and item[sequence].value:
            first: Dataset = item[sequence].value[0]
            return first
    return None


def _floats(values: object, count: int) -> np.ndarray | None:
    try:
        # Not iterable, or an item that is no number: TypeError or ValueError, caught.
        array = np.asarray([float(v) for v in cast(Iterable[Any], values)], dtype=float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.all(np.isfinite(array)) else None


def planes_of(obj: DicomObject) -> list[Plane] | str:
    """The planes of an image instance, or why it is not an image with patient geometry."""
    ds = obj.header
    if obj.modality in NON_IMAGE_MODALITIES:
        return f"{obj.modality} (not an image)"
    if "Rows" not in ds or "Columns" not in ds:
        kind = UID(obj.sop_class).name
        if "Image Storage" in kind:  # pydicom reads a file cut short without complaint
            raise InputError(
                ErrorCode.UNREADABLE,
                f"{obj.source} is a {kind} object without rows and columns: the file is "
                "truncated or incomplete",
            )
        return f"{obj.modality} (no pixel data)"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return f"{obj.modality} (colour images)"
    rows, cols = int(ds.Rows), int(ds.Columns)
    if "PerFrameFunctionalGroupsSequence" in ds:
        planes = []
        for index in range(int(ds.get("NumberOfFrames", 1) or 1)):
            position = _group_item(ds, index, "PlanePositionSequence")
            orientation = _group_item(ds, index, "PlaneOrientationSequence")
            measures = _group_item(ds, index, "PixelMeasuresSequence")
            values = _group_item(ds, index, "PixelValueTransformationSequence")
            plane = _plane(
                obj,
                index + 1,
                position.get("ImagePositionPatient") if position else None,
                orientation.get("ImageOrientationPatient") if orientation else None,
                measures.get("PixelSpacing") if measures else None,
                rows,
                cols,
                (
                    float(values.get("RescaleSlope", 1.0)),
                    float(values.get("RescaleIntercept", 0.0)),
                )
                if values
                else (1.0, 0.0),
            )
            if plane is None:
                return f"{obj.modality} (no patient geometry)"
            planes.append(plane)
        return planes
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return f"{obj.modality} (multi-frame without per-frame geometry)"
    plane = _plane(
        obj,
        None,
        ds.get("ImagePositionPatient"),
        ds.get("ImageOrientationPatient"),
        ds.get("PixelSpacing"),
        rows,
        cols,
        None,
    )
    return [plane] if plane is not None else f"{obj.modality} (no patient geometry)"


def _plane(
    obj: DicomObject,
    frame: int | None,
    position: object,
    orientation: object,
    spacing: object,
    rows: int,
    cols: int,
    rescale: tuple[float, float] | None,
) -> Plane | None:
    pos, ori, pix = _floats(position, 3), _floats(orientation, 6), _floats(spacing, 2)
    if pos is None or ori is None or pix is None or np.any(pix <= 0):
        return None
    row_dir, col_dir = ori[:3], ori[3:]
    if not np.isclose(np.linalg.norm(row_dir), 1, atol=1e-2) or not np.isclose(
        np.linalg.norm(col_dir), 1, atol=1e-2
    ):
        return None
    ori = np.concatenate([row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)])
    return Plane(
        obj.source,
        obj.sop_instance_uid,
        frame,
        pos,
        ori,
        (float(pix[0]), float(pix[1])),
        rows,
        cols,
        rescale,
    )


def describe(uid: str, header: Dataset) -> str:
    """How messages name a series: number, description and UID."""
    number = header.get("SeriesNumber")
    text = str(header.get("SeriesDescription", "") or "")
    return (
        f"series{f' {number}' if number not in (None, '') else ''}"
        f"{f' {text!r}' if text else ''} ({uid})"
    )


@dataclass
class Grouped:
    """Image planes and headers by Series Instance UID, not yet checked; what was left out."""

    planes: dict[str, list[Plane]]
    headers: dict[str, dict[str, Dataset]]
    skipped: Counter[str]

    def instances(self, uid: str) -> set[str]:
        return set(self.headers[uid])

    def label(self, uid: str) -> str:
        return describe(uid, next(iter(self.headers[uid].values())))

    def build(self, uid: str) -> Series:
        """The checked series; raises ``InputError`` (series_inconsistent) for an irregular one."""
        return _series(uid, self.planes[uid], self.headers[uid])


def group_planes(objects: list[DicomObject]) -> Grouped:
    """Group the planes of image instances by Series Instance UID (never by folder)."""
    grouped = Grouped(defaultdict(list), defaultdict(dict), Counter())
    for obj in objects:
        found = planes_of(obj)
        if isinstance(found, str):
            grouped.skipped[found] += 1
            continue
        uid = str(obj.header.get("SeriesInstanceUID", ""))
        if not uid:
            raise InputError(
                ErrorCode.UNREADABLE,
                f"DICOM image {obj.source} has no Series Instance UID",
            )
        grouped.planes[uid].extend(found)
        grouped.headers[uid][obj.sop_instance_uid] = obj.header
    return grouped


def _fail(series_label: str, problem: str) -> InputError:
    return InputError(
        ErrorCode.SERIES_INCONSISTENT,
        f"{series_label} {problem}; a series must be one regular stack of slices",
    )


def _series(uid: str, planes: list[Plane], headers: dict[str, Dataset]) -> Series:
    first = next(iter(headers.values()))
    number = first.get("SeriesNumber")
    description = str(first.get("SeriesDescription", "") or "")
    label = describe(uid, first)
    for name in ("StudyInstanceUID", "FrameOfReferenceUID"):
        values = {str(h.get(name, "")) for h in headers.values()}
        if len(values) > 1:
            raise _fail(label, f"mixes {len(values)} different {name} values")
    sizes = {(p.rows, p.cols) for p in planes}
    if len(sizes) > 1:
        shown = " and ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise _fail(label, f"mixes images of {shown} pixels")
    ref = planes[0]
    for plane in planes[1:]:
        if not np.allclose(plane.orientation, ref.orientation, atol=1e-3):
            raise _fail(
                label,
                f"mixes slice orientations {np.round(ref.orientation, 3).tolist()} and "
                f"{np.round(plane.orientation, 3).tolist()} (a localizer or several stacks?)",
            )
        if not np.allclose(plane.pixel_spacing, ref.pixel_spacing, rtol=1e-3):
            raise _fail(
                label,
                f"mixes pixel spacings {ref.pixel_spacing} and {plane.pixel_spacing} mm",
            )
    row_dir, col_dir = ref.orientation[:3], ref.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    planes = sorted(planes, key=lambda p: float(p.position @ normal))
    in_plane = (ref.pixel_spacing[1], ref.pixel_spacing[0])
    tol = tolerance_mm(in_plane)
    depths = np.asarray([p.position @ normal for p in planes])
    if len(planes) > 1 and np.min(np.diff(depths)) < tol:
        where = int(np.argmin(np.diff(depths)))
        raise _fail(
            label,
            f"holds two images at the same position ({depths[where]:.2f} mm along the normal): "
            "several echoes, phases or a repeated acquisition",
        )
    affine = np.eye(4)
    affine[:3, 0] = row_dir * ref.pixel_spacing[1]
    affine[:3, 1] = col_dir * ref.pixel_spacing[0]
    affine[:3, 3] = planes[0].position
    if len(planes) > 1:
        step = (planes[-1].position - planes[0].position) / (len(planes) - 1)
        expected = planes[0].position + np.outer(np.arange(len(planes)), step)
        offsets = np.linalg.norm(np.stack([p.position for p in planes]) - expected, axis=1)
        if offsets.max() > max(tol, 0.05 * np.linalg.norm(step)):
            gaps = np.diff(depths)
            raise _fail(
                label,
                f"has unevenly spaced slices (gaps from {gaps.min():.2f} to {gaps.max():.2f} mm "
                "along the normal): a missing slice?",
            )
    else:
        thickness = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        step = normal * abs(thickness)
    affine[:3, 2] = step
    order = {p.sop_instance_uid: None for p in planes}
    return Series(
        study_uid=str(first.get("StudyInstanceUID", "")),
        series_uid=uid,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        series_number=int(number) if number not in (None, "") else None,
        description=description,
        modality=str(first.get("Modality", "") or ""),
        planes=planes,
        headers={sop: headers[sop] for sop in order},
        affine=affine,
    )
