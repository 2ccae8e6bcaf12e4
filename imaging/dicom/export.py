"""Masks written back as DICOM: a SEG or an RTSTRUCT that references the source series.

The output is a new object (new SOP Instance and Series UIDs) in the study of the source
series, made by ``segaudit`` (Manufacturer, Manufacturer's Model Name, Software Versions, the
series description and the content label say so). It keeps what the input said about its
structures: a SEG gets the input's segment descriptions (label, category, type, algorithm,
tracking ids, colour) in the input's segment numbers, with the input's segmentation type
(a FRACTIONAL input gets a fractional SEG holding 0 or the maximum); an RTSTRUCT gets the input's
ROI numbers, names, colours and observations. A class that the cleansed mask has and the input
lacks is described by the segment (or ROI) that stands for it elsewhere in the dataset. Reading
the output back gives the mask it was written from, voxel for voxel.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import DA, TM, format_number_as_ds

import imaging
from imaging.dicom import rtstruct, seg
from imaging.dicom.cases import SPLIT_MULTIFRAME, MaskSource
from imaging.dicom.rtstruct import RTSTRUCT_CLASS, contours_of
from imaging.dicom.series import Series
from imaging.dicom.source import MANUFACTURER
from imaging.geometry import DICOM_SEG, Geometry
from imaging.layout import CLEANSED, PSEUDO

MODEL = "segaudit label audit"
# Output kind (the audit's output folder) -> series number, content label, description.
KINDS: dict[str, tuple[int, str, str]] = {
    CLEANSED: (9001, "CLEANSED", "segaudit cleansed"),
    PSEUDO: (9002, "PSEUDO_LABEL", "segaudit pseudo label"),
}
OTHER_KIND = (9003, "SEGAUDIT", "segaudit")
# How each kind was made (SEG SegmentAlgorithmType, RTSTRUCT ROIGenerationAlgorithm): a pseudo
# label is the network's alone; a cleansed mask is the given mask, or the network's where the
# audit replaced it.
ALGORITHM_TYPES = {PSEUDO: "AUTOMATIC", CLEANSED: "SEMIAUTOMATIC"}
ALGORITHM_NAME = "segaudit"


def _algorithm_type(kind: str) -> str:
    return ALGORITHM_TYPES.get(kind, "SEMIAUTOMATIC")


def _algorithm() -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME,
        family=codes.cid7162.ArtificialIntelligence,
        version=imaging.__version__,
        source=MANUFACTURER,
    )


def _series_text(text: str, made: dt.datetime, original: str, audit_id: int | None) -> str:
    """A series description that tells two runs apart: what, of which audit (the service's;
    none stand-alone), when, and of which input (cut first where it is too long).
    """
    audit = f"audit {audit_id} " if audit_id is not None else ""
    return _lo(f"{text} {audit}{made:%Y-%m-%d %H:%M} ({original})")


def write_mask(
    path: Path,
    labels: np.ndarray,
    geometry: Geometry,
    *,
    kind: str = CLEANSED,
    audit_id: int | None = None,
    class_names: Mapping[int, str] | None = None,
) -> None:
    """Write ``labels`` ``(X, Y, Z)`` as the DICOM kind ``geometry`` was read from.

    ``kind`` says what the output is (``imaging.layout.CLEANSED`` or ``PSEUDO``); ``audit_id``
    (the service's audit) goes into the series description; ``class_names`` (``{class:
    name}``, the declared classes) become segment labels or ROI names.
    """
    source = geometry.header
    if not isinstance(source, MaskSource):
        raise ValueError(f"cannot write {path.name}: the mask was not read from DICOM")
    build = build_seg if source.fmt == DICOM_SEG else build_rtstruct
    build(labels, source, kind=kind, audit_id=audit_id, class_names=class_names).save_as(
        path, enforce_file_format=True
    )


def _kind(kind: str) -> tuple[int, str, str]:
    return KINDS.get(kind, OTHER_KIND)


def _lo(text: str) -> str:
    """A Long String (LO) value: at most 64 characters."""
    return text if len(text) <= 64 else text[:61] + "..."


def _clean_headers(series: Series) -> list[Dataset]:
    """Source headers, copied, with what highdicom rejects in real exports repaired."""
    headers = []
    for header in series.headers.values():
        header = copy.deepcopy(header)
        if "SpecificCharacterSet" in header and not header.SpecificCharacterSet:
            del header.SpecificCharacterSet  # empty means the default repertoire
        headers.append(header)
    return headers


def _output_units(
    labels: np.ndarray, source: MaskSource
) -> list[tuple[int, seg.Segment | rtstruct.Roi]]:
    """(class, describing unit) for the input's units in order, then for added classes."""
    units = [(source.classes[u.number], u) for u in _input_units(source)]
    known = {cls for cls, _ in units}
    for cls in (int(c) for c in np.unique(labels) if c != 0 and int(c) not in known):
        if cls not in source.catalogue:
            raise ValueError(f"class {cls} appears in no mask of the dataset: cannot describe it")
        units.append((cls, source.catalogue[cls]))
    return units


def _input_units(source: MaskSource) -> list[seg.Segment | rtstruct.Roi]:
    if source.fmt == DICOM_SEG:
        return [s for s in seg.segments_of(source.obj.header) if s.number in source.classes]
    return [r for r in rtstruct.rois_of(source.obj.header) if r.number in source.classes]


def build_seg(
    labels: np.ndarray,
    source: MaskSource,
    *,
    kind: str = "cleansed",
    audit_id: int | None = None,
    class_names: Mapping[int, str] | None = None,
) -> hd.seg.Segmentation:
    """A DICOM SEG of ``labels`` ``(X, Y, Z)`` on the source series, segments as the input's;
    a class in ``class_names`` gets that name as its segment label and description.
    """
    series, mask = source.series, source.obj.header
    units = _output_units(labels, source)
    lookup = np.zeros(max([int(labels.max()), *(cls for cls, _ in units)]) + 1, dtype=np.uint16)
    descriptions = []
    for number, (cls, unit) in enumerate(units, start=1):
        lookup[cls] = number
        assert isinstance(unit, seg.Segment)  # SEG masks are never mixed with RTSTRUCT ones
        item = copy.deepcopy(unit.item)
        item.SegmentNumber = number
        item.SegmentAlgorithmType = _algorithm_type(kind)
        item.SegmentAlgorithmName = ALGORITHM_NAME
        name = (class_names or {}).get(cls)
        if name:
            item.SegmentLabel = name
            item.SegmentDescription = _lo(f"{name} (class {cls})")
        item.SegmentationAlgorithmIdentificationSequence = _algorithm()
        descriptions.append(hd.seg.SegmentDescription.from_dataset(item))
    frames = lookup[labels].transpose(2, 1, 0)  # (Z, rows, cols): one frame per slice
    headers = _clean_headers(series)
    if len(headers) == 1 and series.planes[0].frame is not None:  # one multi-frame instance
        order = np.argsort(np.asarray([p.frame for p in series.planes]))
        frames = frames[order]
    elif len(headers) != len(series.planes):  # refused on reading (imaging.dicom.cases)
        raise ValueError(f"cannot write a SEG for {series.label}: {SPLIT_MULTIFRAME}")
    number, label, text = _kind(kind)
    kind_type = str(mask.get("SegmentationType", "BINARY"))
    options: dict[str, Any] = {}  # the fractional type's keyword arguments
    if kind_type == "FRACTIONAL":
        options["fractional_type"] = str(mask.get("SegmentationFractionalType", "PROBABILITY"))
        options["max_fractional_value"] = int(mask.get("MaximumFractionalValue", 255))
    out = hd.seg.Segmentation(
        source_images=headers,
        pixel_array=frames.astype(np.uint16 if len(units) > 255 else np.uint8),
        segmentation_type=kind_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=imaging.__version__,
        device_serial_number="0",
        content_label=label,
        content_description=_lo(f"{text} mask of {mask.get('SeriesDescription', '') or 'SEG'}"),
        **options,
    )
    made = dt.datetime.now()
    out.SeriesDate, out.SeriesTime = DA(made.strftime("%Y%m%d")), TM(made.strftime("%H%M%S"))
    original = mask.get("SeriesDescription", "") or "SEG"
    out.SeriesDescription = _series_text(text, made, original, audit_id)
    return out


def _copy(header: Dataset, out: Dataset, names: tuple[str, ...]) -> None:
    """Copy attributes of the source image; a missing one is written empty (Type 2)."""
    for name in names:
        setattr(out, name, header.get(name))


def build_rtstruct(
    labels: np.ndarray,
    source: MaskSource,
    *,
    kind: str = "cleansed",
    audit_id: int | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Dataset:
    """An RT Structure Set of ``labels`` ``(X, Y, Z)``: one ROI per class, contours per slice;
    a class in ``class_names`` gets that name as its ROI name.
    """
    series, mask = source.series, source.obj.header
    image = next(iter(series.headers.values()))
    now = dt.datetime.now()
    number, label, text = _kind(kind)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(RTSTRUCT_CLASS)
    ds.file_meta.MediaStorageSOPInstanceUID = hd.UID()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTSTRUCT_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = (
        now.strftime("%Y%m%d"),
        now.strftime("%H%M%S"),
    )
    _copy(image, ds, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"))
    _copy(
        image,
        ds,
        ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID"),
    )
    _copy(image, ds, ("AccessionNumber",))
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    _copy(image, ds, ("PositionReferenceIndicator",))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = hd.UID()
    ds.SeriesNumber = number
    ds.SeriesDate, ds.SeriesTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    original = mask.get("SeriesDescription", "") or "RTSTRUCT"
    ds.SeriesDescription = _series_text(text, now, original, audit_id)
    ds.OperatorsName = None
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL
    ds.SoftwareVersions = imaging.__version__
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label
    ds.StructureSetName = _lo(f"{text} {mask.get('StructureSetLabel', '')}".strip())
    ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ReferencedFrameOfReferenceSequence = Sequence([_frame_of_reference(series)])
    structures: list[Dataset] = []
    contours: list[Dataset] = []
    observations: list[Dataset] = []
    used = {r.number for r in _input_units(source)}
    for cls, unit in _output_units(labels, source):
        assert isinstance(unit, rtstruct.Roi)
        roi_number = unit.number if source.classes.get(unit.number) == cls else max(used) + 1
        used.add(roi_number)
        structure = copy.deepcopy(unit.structure)
        structure.ROINumber = roi_number
        structure.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
        structure.ROIGenerationAlgorithm = _algorithm_type(kind)
        structure.ROIGenerationDescription = _lo(f"{ALGORITHM_NAME} {imaging.__version__}")
        name = (class_names or {}).get(cls)
        if name:
            structure.ROIName = name
        structures.append(structure)
        contours.append(_roi_contours(labels == cls, series, roi_number, unit))
        observations.append(_observation(unit, roi_number, len(observations) + 1))
    ds.StructureSetROISequence = Sequence(structures)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    return ds


def _image_ref(series: Series, index: int) -> Dataset:
    plane = series.planes[index]
    ref = Dataset()
    ref.ReferencedSOPClassUID = series.headers[plane.sop_instance_uid].SOPClassUID
    ref.ReferencedSOPInstanceUID = plane.sop_instance_uid
    if plane.frame is not None:
        ref.ReferencedFrameNumber = plane.frame
    return ref


def _frame_of_reference(series: Series) -> Dataset:
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = series.series_uid
    ref_series.ContourImageSequence = Sequence(
        [_image_ref(series, k) for k in range(len(series.planes))]
    )
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired)
    study.ReferencedSOPInstanceUID = series.study_uid
    study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = Sequence([study])
    return frame


def _roi_contours(area: np.ndarray, series: Series, roi_number: int, unit: rtstruct.Roi) -> Dataset:
    item = Dataset()
    if unit.contours is not None and "ROIDisplayColor" in unit.contours:
        item.ROIDisplayColor = unit.contours.ROIDisplayColor
    item.ReferencedROINumber = roi_number
    found: list[Dataset] = []
    for z in np.flatnonzero(area.any(axis=(0, 1))):
        for points in contours_of(area[:, :, z]):
            voxels = np.c_[points, np.full(len(points), float(z)), np.ones(len(points))]
            world = (series.affine @ voxels.T).T[:, :3]
            contour = Dataset()
            contour.ContourImageSequence = Sequence([_image_ref(series, int(z))])
            contour.ContourGeometricType = rtstruct.CLOSED
            contour.NumberOfContourPoints = len(world)
            contour.ContourNumber = len(found) + 1
            contour.ContourData = [format_number_as_ds(float(v)) for v in world.ravel()]
            found.append(contour)
    if found:
        item.ContourSequence = Sequence(found)
    return item


def _observation(unit: rtstruct.Roi, roi_number: int, number: int) -> Dataset:
    item = copy.deepcopy(unit.observation) if unit.observation is not None else Dataset()
    item.ObservationNumber = number
    item.ReferencedROINumber = roi_number
    for name in ("RTROIInterpretedType", "ROIInterpreter"):
        if name not in item:
            setattr(item, name, "")
    return item
