"""RT Structure Sets (RTSTRUCT): contours rasterised onto the series grid, and back.

A contour's points are in patient coordinates (mm, LPS). The inverse of the series' affine
takes them to voxel coordinates ``(x, y, z)``; ``z`` must be a slice of the series (within the
position tolerance), and the polygon is filled in that slice: a voxel is inside when its centre
is. Several contours of one ROI on one slice combine by the even-odd rule, so a contour inside
another is a hole. Only CLOSED_PLANAR contours describe areas; points and open lines are left
out with a note. A ROI that names another frame of reference than its series (rt-utils writes
one of its own) is read in the series' frame, with a note: the series and image references win.

Writing goes the other way: ``contours_of`` traces each class on each slice along the 0.5 level
between voxel centres, so that filling the written contours by the rule above gives back the
mask voxel for voxel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from skimage.draw import polygon
from skimage.measure import find_contours

from imaging.dicom.series import Series, tolerance_mm
from imaging.dicom.source import DicomObject
from imaging.errors import ErrorCode, InputError

log = logging.getLogger("segaudit.dicom")

RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
CLOSED = "CLOSED_PLANAR"


@dataclass(frozen=True)
class Roi:
    """One ROI of a structure set with its three items (structure, contours, observation)."""

    number: int
    name: str
    key: str
    structure: Dataset  # StructureSetROISequence item
    contours: Dataset | None  # ROIContourSequence item
    observation: Dataset | None  # RTROIObservationsSequence item

    @property
    def closed_contours(self) -> list[Dataset]:
        if self.contours is None:
            return []
        return [
            c
            for c in self.contours.get("ContourSequence", [])
            if str(c.get("ContourGeometricType", "")) == CLOSED
        ]

    @property
    def only_points_or_lines(self) -> bool:
        """True for a ROI drawn only as points or open lines: nothing to fill."""
        has_any = self.contours is not None and bool(self.contours.get("ContourSequence"))
        return has_any and not self.closed_contours


def rois_of(header: Dataset) -> list[Roi]:
    """The ROIs in ROI-number order; ``key`` (the name, case and spaces aside) matches ROIs."""
    contours = {int(c.ReferencedROINumber): c for c in header.get("ROIContourSequence", [])}
    observations = {
        int(o.ReferencedROINumber): o for o in header.get("RTROIObservationsSequence", [])
    }
    found = []
    for item in header.get("StructureSetROISequence", []):
        number = int(item.ROINumber)
        name = str(item.get("ROIName", "") or f"ROI {number}")
        found.append(
            Roi(
                number,
                name,
                f"|{name.strip().lower()}",
                item,
                contours.get(number),
                observations.get(number),
            )
        )
    return sorted(found, key=lambda r: r.number)


def referenced_series(header: Dataset) -> list[str]:
    """Series Instance UIDs the structure set was drawn on."""
    uids = []
    for frame in header.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            uids += [str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])]
    return uids


def referenced_instances(header: Dataset) -> set[str]:
    """SOP Instance UIDs of the images the contours (or the structure set) refer to."""
    uids = set()
    for frame in header.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uids |= {
                    str(i.ReferencedSOPInstanceUID) for i in series.get("ContourImageSequence", [])
                }
    for roi in header.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            uids |= {
                str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])
            }
    return uids


def _fill(
    points: np.ndarray, series: Series, roi: Roi, name: str, case: str | None
) -> tuple[int, np.ndarray]:
    """Slice index and filled ``(X, Y)`` mask of one closed contour ``(N, 3)`` in mm."""
    voxels = (np.linalg.inv(series.affine) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    z = voxels[:, 2]
    k = int(np.round(np.median(z)))
    step = series.spacing[2]
    off = float(np.max(np.abs(z - k)) * step)
    if not 0 <= k < series.shape[2]:
        raise InputError(
            ErrorCode.GEOMETRY_MISMATCH,
            f"a contour of ROI '{roi.name}' in RTSTRUCT {name} lies outside the slices of "
            f"{series.label}, {abs(k - np.clip(k, 0, series.shape[2] - 1)) * step:.1f} mm from "
            "the nearest one",
            case=case,
        )
    if off > tolerance_mm(series.spacing):
        raise InputError(
            ErrorCode.GEOMETRY_MISMATCH,
            f"a contour of ROI '{roi.name}' in RTSTRUCT {name} lies {off:.2f} mm off slice "
            f"{k + 1} of {series.label}; contours must lie in the planes of the slices",
            case=case,
        )
    area = np.zeros(series.shape[:2], dtype=bool)
    # skimage.draw.polygon is unannotated.
    rr, cc = polygon(voxels[:, 0], voxels[:, 1], shape=area.shape)  # type: ignore[no-untyped-call]
    area[rr, cc] = True
    return k, area


def read_labels(
    obj: DicomObject, series: Series, classes: dict[int, int], *, case: str | None = None
) -> np.ndarray:
    """The RTSTRUCT as a label map ``(X, Y, Z)`` on ``series``: ROI ``r`` -> ``classes[r]``.

    Raises ``InputError``: geometry_mismatch for a contour off the series' slices,
    segments_overlap where two ROIs share a voxel.
    """
    name = obj.source.name
    top = max(classes.values(), default=0)
    labels = np.zeros(series.shape, dtype=np.uint8 if top < 256 else np.uint16)
    roi_of = {cls: number for number, cls in classes.items()}  # one class per ROI
    for roi in rois_of(obj.header):
        if roi.number not in classes:
            continue
        frame_uid = str(roi.structure.get("ReferencedFrameOfReferenceUID", "") or "")
        if frame_uid and frame_uid != series.frame_of_reference_uid:
            # Some tools (rt-utils among them) write a frame of reference of their own; the
            # series and image references decide, and every contour must still lie on a slice.
            log.warning(
                "note: ROI '%s' of RTSTRUCT %s names frame of reference %s, not that of %s; "
                "read in the series' frame",
                roi.name,
                name,
                frame_uid,
                series.label,
            )
        mask = np.zeros(series.shape, dtype=bool)
        for contour in roi.closed_contours:
            points = np.asarray([float(v) for v in contour.ContourData], dtype=float)
            if points.size < 9 or points.size % 3:
                continue  # fewer than three points encloses nothing
            k, area = _fill(points.reshape(-1, 3), series, roi, name, case)
            mask[:, :, k] ^= area
        clash = mask & (labels != 0)
        if clash.any():
            other = roi_of[int(labels[clash][0])]
            other_name = next(r.name for r in rois_of(obj.header) if r.number == other)
            raise InputError(
                ErrorCode.SEGMENTS_OVERLAP,
                f"ROIs '{other_name}' and '{roi.name}' of RTSTRUCT {name} overlap in "
                f"{int(clash.sum())} voxels; segaudit audits one class per voxel, so export the "
                "structures without overlaps (leave out enclosing ones such as the body outline)",
                case=case,
            )
        labels[mask] = classes[roi.number]
    return labels


def contours_of(area: np.ndarray) -> list[np.ndarray]:
    """Closed contours ``[(N, 2)]`` in voxel coordinates ``(x, y)`` around ``area`` ``(X, Y)``.

    The even-odd fill of the result, voxel centres inside, is ``area`` again.
    """
    padded = np.pad(area.astype(np.uint8), 1)
    found: list[np.ndarray] = []
    # skimage.measure.find_contours is unannotated.
    for contour in find_contours(padded, 0.5):  # type: ignore[no-untyped-call]
        points = contour[:-1] - 1.0  # closed: the last point repeats the first
        before, after = points - np.roll(points, 1, axis=0), np.roll(points, -1, axis=0) - points
        cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
        straight = (np.abs(cross) < 1e-9) & ((before * after).sum(axis=1) > 0)
        found.append(points[~straight])
    return found
