"""DICOM Segmentation objects (SEG) read onto the grid of the series they segment.

Every frame of a SEG is placed on a slice of its series by its plane position, and its per-frame
source reference, when present, must name that same slice; a frame that lies off the series'
slices, or a SEG whose pixels have another size, spacing or orientation, is a geometry error.
BINARY, FRACTIONAL (a voxel belongs to a segment from half the maximum value up) and LABELMAP
segmentations are read. Segments become classes; a voxel in two segments is refused, because a
label map holds one class per voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from imaging.dicom.series import Series, tolerance_mm
from imaging.dicom.source import DicomObject
from imaging.errors import ErrorCode, InputError

SEG_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
    }
)


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG: its number, label, class key and its SegmentSequence item."""

    number: int
    label: str
    key: str
    item: Dataset


def _code_key(item: Dataset, sequence: str) -> str:
    codes = item.get(sequence)
    if not codes:
        return ""
    code = codes[0]
    return f"{code.get('CodingSchemeDesignator', '')}:{code.get('CodeValue', '')}"


def segments_of(header: Dataset) -> list[Segment]:
    """The segments in segment-number order; ``key`` says which segments of two SEGs match.

    Two segments are the same class when their property type code and label agree (case and
    surrounding spaces aside). A LABELMAP's segment 0, when described, is the background.
    """
    found = []
    for item in header.get("SegmentSequence", []):
        if int(item.SegmentNumber) == 0:
            continue
        label = str(item.get("SegmentLabel", "") or "")
        key = f"{_code_key(item, 'SegmentedPropertyTypeCodeSequence')}|{label.strip().lower()}"
        found.append(Segment(int(item.SegmentNumber), label, key, item))
    return sorted(found, key=lambda s: s.number)


def referenced_series(header: Dataset) -> list[str]:
    """Series Instance UIDs that the SEG says it was derived from."""
    uids = [str(item.SeriesInstanceUID) for item in header.get("ReferencedSeriesSequence", [])]
    for study in header.get("StudiesContainingOtherReferencedInstancesSequence", []):
        uids += [str(item.SeriesInstanceUID) for item in study.get("ReferencedSeriesSequence", [])]
    return uids


def referenced_instances(header: Dataset) -> set[str]:
    """SOP Instance UIDs of the source images that the SEG lists."""
    uids = set()
    for series in header.get("ReferencedSeriesSequence", []):
        uids |= {
            str(i.ReferencedSOPInstanceUID) for i in series.get("ReferencedInstanceSequence", [])
        }
    return uids


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        if not groups:
            continue
        item = groups[index] if name.startswith("PerFrame") else groups[0]
        if sequence in item and item[sequence].value:
            first: Dataset = item[sequence].value[0]
            return first
    return None


def _source_ref(ds: Dataset, index: int) -> tuple[str, int | None] | None:
    derivation = _frame_item(ds, index, "DerivationImageSequence")
    if derivation is None or not derivation.get("SourceImageSequence"):
        return None
    source = derivation.SourceImageSequence[0]
    frames = source.get("ReferencedFrameNumber")
    frame = int(frames[0] if isinstance(frames, list | tuple) else frames) if frames else None
    return str(source.ReferencedSOPInstanceUID), frame


def check_grid(obj: DicomObject, series: Series, *, case: str | None = None) -> None:
    """Raise ``geometry_mismatch`` unless the SEG's pixel grid is the series' in-plane grid."""
    ds, name = obj.header, obj.source.name
    problems = []
    if (int(ds.Rows), int(ds.Columns)) != (series.rows, series.cols):
        problems.append(
            f"it is {ds.Rows}x{ds.Columns} pixels, the series {series.rows}x{series.cols}"
        )
    measures = _frame_item(ds, 0, "PixelMeasuresSequence")
    plane = series.planes[0]
    if measures is not None and "PixelSpacing" in measures:
        spacing = tuple(float(v) for v in measures.PixelSpacing)
        if not np.allclose(spacing, plane.pixel_spacing, rtol=1e-3):
            problems.append(f"its pixel spacing is {spacing} mm, the series' {plane.pixel_spacing}")
    orientation = _frame_item(ds, 0, "PlaneOrientationSequence")
    if orientation is not None and "ImageOrientationPatient" in orientation:
        cosines = np.asarray([float(v) for v in orientation.ImageOrientationPatient])
        if not np.allclose(cosines, plane.orientation, atol=1e-3):
            problems.append(
                f"its orientation is {np.round(cosines, 4).tolist()}, the series' "
                f"{np.round(plane.orientation, 4).tolist()}"
            )
    if problems:
        raise InputError(
            ErrorCode.GEOMETRY_MISMATCH,
            f"SEG {name} does not lie on the grid of {series.label}: {'; '.join(problems)}",
            case=case,
        )


def slice_of_frame(obj: DicomObject, series: Series, index: int, *, case: str | None = None) -> int:
    """The series slice that frame ``index`` (0-based) of the SEG lies on."""
    ds, name = obj.header, obj.source.name
    position_item = _frame_item(ds, index, "PlanePositionSequence")
    ref = _source_ref(ds, index)
    by_ref = series.index_of(*ref) if ref is not None else None
    if position_item is not None and "ImagePositionPatient" in position_item:
        position = np.asarray([float(v) for v in position_item.ImagePositionPatient])
        nearest, distance = series.nearest(position)
        if distance > tolerance_mm(series.spacing):
            raise InputError(
                ErrorCode.GEOMETRY_MISMATCH,
                f"frame {index + 1} of SEG {name} lies at {np.round(position, 2).tolist()} mm, "
                f"{distance:.2f} mm from the nearest slice of {series.label}",
                case=case,
            )
        if by_ref is not None and by_ref != nearest:
            raise InputError(
                ErrorCode.GEOMETRY_MISMATCH,
                f"frame {index + 1} of SEG {name} references slice {by_ref + 1} of "
                f"{series.label} but lies on slice {nearest + 1}",
                case=case,
            )
        return nearest
    if by_ref is None:
        raise InputError(
            ErrorCode.MISSING_IMAGE,
            f"frame {index + 1} of SEG {name} has no plane position and its source image is "
            f"not in {series.label}",
            case=case,
        )
    return by_ref


def read_labels(
    obj: DicomObject, series: Series, classes: dict[int, int], *, case: str | None = None
) -> np.ndarray:
    """The SEG as a label map ``(X, Y, Z)`` on ``series``' grid: segment ``s`` -> ``classes[s]``.

    Raises ``InputError``: geometry_mismatch off the grid, segments_overlap where two segments
    share a voxel, unreadable_file when the pixel data cannot be decoded.
    """
    check_grid(obj, series, case=case)
    full = obj.source.dataset(pixels=True, case=case)
    name = obj.source.name
    try:
        pixels = full.pixel_array
    except Exception as exc:  # every decoder failure is the same user-facing problem
        raise InputError(
            ErrorCode.UNREADABLE, f"cannot decode the pixel data of SEG {name}: {exc}", case=case
        ) from exc
    frames = int(full.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(frames, series.rows, series.cols)
    kind = str(full.get("SegmentationType", "BINARY"))
    top = max(classes.values(), default=0)
    labels = np.zeros(series.shape, dtype=np.uint8 if top < 256 else np.uint16)
    numbers = {s.number: s.label for s in segments_of(full)}
    segment_of = {cls: segment for segment, cls in classes.items()}  # one class per segment
    for index in range(frames):
        z = slice_of_frame(obj, series, index, case=case)
        frame = pixels[index].T  # (cols, rows) = (X, Y)
        if kind == "LABELMAP":
            layers = [(int(s), frame == s) for s in np.unique(frame) if s != 0]
        else:
            ident = _frame_item(full, index, "SegmentIdentificationSequence")
            if ident is None:
                raise InputError(
                    ErrorCode.UNREADABLE,
                    f"frame {index + 1} of SEG {name} names no segment",
                    case=case,
                )
            if kind == "FRACTIONAL":
                cut = float(full.get("MaximumFractionalValue", 255)) / 2.0
                on = frame >= cut
            else:
                on = frame > 0
            layers = [(int(ident.ReferencedSegmentNumber), on)]
        for segment, on in layers:
            if segment not in classes:
                raise InputError(
                    ErrorCode.UNREADABLE,
                    f"frame {index + 1} of SEG {name} refers to segment {segment}, which the "
                    "SEG does not describe",
                    case=case,
                )
            plane = labels[:, :, z]
            clash = on & (plane != 0) & (plane != classes[segment])
            if clash.any():
                other = segment_of[int(plane[clash][0])]
                raise InputError(
                    ErrorCode.SEGMENTS_OVERLAP,
                    f"segments {other} '{numbers.get(other, '')}' and {segment} "
                    f"'{numbers.get(segment, '')}' of SEG {name} overlap in {int(clash.sum())} "
                    f"voxels on slice {z + 1}; segaudit audits one class per voxel, so export "
                    "the segments without overlaps",
                    case=case,
                )
            plane[on] = classes[segment]
    return labels
