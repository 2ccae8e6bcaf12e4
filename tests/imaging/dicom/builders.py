"""Builders of realistic DICOM test data from the committed MR volumes (no binaries committed).

``mr_series`` writes a volume as an MR series the way a scanner does (one instance per slice,
positions and orientation from the volume's affine, optional rescale and compression);
``seg_for`` draws a label volume as a DICOM SEG on it with highdicom; ``pacs_export`` lays a
set of cases out like a PACS export: nested patient/study/series folders, files without
extensions named out of slice order, SEGs in a folder of their own, a non-DICOM file, an SR
document, optionally a DICOMDIR, zipped. None of this uses the code under test.
"""

from __future__ import annotations

import copy
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import nrrd
import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from imaging.dicom.labels import pseudonym
from imaging.dicom.series import Series, group_planes
from imaging.dicom.source import DicomObject
from tests.conftest import MR

SYNTAXES = (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless)
TUMOUR = ("Tumour", codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Tumor)
TISSUE = ("Tissue", codes.cid7150.Tissue, codes.SCT.Tissue)


def nrrd_volume(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label, LPS affine) of ``data/sample/mr_nrrd/<name>``."""
    image, header = nrrd.read(str(MR / f"{name}_image.nrrd"))
    label, _ = nrrd.read(str(MR / f"{name}_label.nrrd"))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(header["space directions"], float).T
    affine[:3, 3] = header["space origin"]
    return image.astype(np.int16), label.astype(np.uint8), affine


@dataclass
class Study:
    patient_id: str
    study_uid: str = field(default_factory=lambda: str(hd.UID()))
    frame_of_reference_uid: str = field(default_factory=lambda: str(hd.UID()))


def mr_series(
    volume: np.ndarray,
    affine: np.ndarray,
    study: Study,
    *,
    series_number: int,
    description: str = "T1 AX",
    syntax: str = ExplicitVRLittleEndian,
    rescale: tuple[float, float] = (1.0, 0.0),
) -> list[Dataset]:
    """One MR Image instance per slice ``volume[:, :, k]``; stored = (value - b) / m."""
    series_uid = str(hd.UID())
    slope, intercept = rescale
    row_dir, col_dir = affine[:3, 0], affine[:3, 1]
    out = []
    for k in range(volume.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = (
            "20240102",
            "101500",
            "20240102",
            "101500",
        )
        ds.AccessionNumber = "A1"
        ds.Modality = "MR"
        ds.Manufacturer = "builder"
        ds.ReferringPhysicianName = ""
        ds.PatientName = f"{study.patient_id}^Test"
        ds.PatientID = study.patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = volume.shape[2] - k  # numbered against the slice order on purpose
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in (affine @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [
            f"{v:.8f}"
            for v in (*row_dir / np.linalg.norm(row_dir), *col_dir / np.linalg.norm(col_dir))
        ]
        ds.PixelSpacing = [f"{np.linalg.norm(col_dir):.8f}", f"{np.linalg.norm(row_dir):.8f}"]
        ds.SliceThickness = f"{np.linalg.norm(affine[:3, 2]):.6f}"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "500", "15", "1"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
        stored = np.round((volume[:, :, k].T.astype(float) - intercept) / slope).astype(np.int16)
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        if syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        elif syntax != ExplicitVRLittleEndian:
            ds.compress(syntax)
        out.append(ds)
    return out


def multiframe(series: list[Dataset]) -> list[Dataset]:
    """The series as one Legacy Converted Enhanced MR instance (per-frame functional groups)."""
    plain = []
    for ds in series:
        ds = copy.deepcopy(ds)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        plain.append(ds)
    return [
        hd.legacy.LegacyConvertedEnhancedMRImage(
            plain,
            series_instance_uid=str(hd.UID()),
            series_number=int(series[0].SeriesNumber),
            sop_instance_uid=str(hd.UID()),
            instance_number=1,
        )
    ]


def _frames_for(sources: list[Dataset], labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Frames ``(n, rows, cols)`` of ``labels`` in the order highdicom expects for ``sources``."""
    inverse = np.linalg.inv(affine)
    if len(sources) == 1 and "PerFrameFunctionalGroupsSequence" in sources[0]:
        positions = [
            f.PlanePositionSequence[0].ImagePositionPatient
            for f in sources[0].PerFrameFunctionalGroupsSequence
        ]
    else:
        positions = [ds.ImagePositionPatient for ds in sources]
    frames = []
    for position in positions:
        k = int(round((inverse @ [*map(float, position), 1.0])[2]))
        frames.append(labels[:, :, k].T)
    return np.stack(frames)


def segment(number: int, kind: tuple = TUMOUR) -> hd.seg.SegmentDescription:
    label, category, prop = kind
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        tracking_uid=str(hd.UID()),
        tracking_id=f"{label} {number}",
    )


def seg_for(
    sources: list[Dataset],
    labels: np.ndarray,
    affine: np.ndarray,
    *,
    kinds: tuple[tuple, ...] = (TUMOUR,),
    segmentation_type: str = "BINARY",
) -> hd.seg.Segmentation:
    """A SEG of ``labels`` (values 1..len(kinds)) drawn on ``sources``."""
    frames = _frames_for(sources, labels, affine)
    array: np.ndarray = frames
    if segmentation_type == "FRACTIONAL":
        array = np.stack([(frames == c + 1) for c in range(len(kinds))], axis=-1).astype(np.float32)
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=array,
        segmentation_type=segmentation_type,
        segment_descriptions=[segment(i + 1, kind) for i, kind in enumerate(kinds)],
        series_instance_uid=str(hd.UID()),
        series_number=100,
        sop_instance_uid=str(hd.UID()),
        instance_number=1,
        manufacturer="annotation tool",
        manufacturer_model_name="builder",
        software_versions="1",
        device_serial_number="1",
        series_description="tumour annotation",
    )


@dataclass
class BuiltCase:
    patient_id: str
    series_number: int
    images: list[Dataset]
    mask: Dataset
    labels: np.ndarray  # (X, Y, Z) as given to the mask
    affine: np.ndarray

    @property
    def name(self) -> str:
        """The case's pseudonymous name, from its study and series UIDs."""
        first = self.images[0]
        return pseudonym(str(first.StudyInstanceUID), str(first.SeriesInstanceUID))


def slab_cases(
    *, slab: int = 5, multiframe_slab: int | None = 6, rescale: tuple[float, float] = (1.0, 0.0)
) -> list[BuiltCase]:
    """brain1 and breast1 cut into slabs of ``slab`` slices: one series and one SEG each (9).

    Slabs cycle through the transfer syntaxes in ``SYNTAXES``; slab ``multiframe_slab`` (in the
    order built) is one enhanced multi-frame instance instead of single-frame ones.
    """
    cases = []
    for name in ("brain1", "breast1"):
        image, label, affine = nrrd_volume(name)
        study = Study(name.upper())
        for number, start in enumerate(range(0, image.shape[2] - slab + 1, slab), start=1):
            moved = affine.copy()
            moved[:3, 3] = (affine @ [0, 0, start, 1])[:3]
            part = slice(start, start + slab)
            syntax = SYNTAXES[len(cases) % len(SYNTAXES)]
            images = mr_series(
                image[:, :, part],
                moved,
                study,
                series_number=number,
                syntax=syntax,
                rescale=rescale,
            )
            if len(cases) == multiframe_slab:
                images = multiframe(images)
            labels = label[:, :, part]
            cases.append(
                BuiltCase(
                    study.patient_id, number, images, seg_for(images, labels, moved), labels, moved
                )
            )
    return cases


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def pacs_export(root: Path, cases: list[BuiltCase], *, as_zip: bool = True) -> Path:
    """Lay ``cases`` out like a PACS export under ``root``; return the zip (or the folder)."""
    folder = root / "EXPORT"
    for index, case in enumerate(cases):
        series_dir = folder / case.patient_id / "STUDY1" / f"SER{case.series_number:03d}"
        for number, ds in enumerate(reversed(case.images)):  # names against the slice order
            save(ds, series_dir / f"IM{number:05d}")
        save(case.mask, folder / "SEG" / f"seg_{index:02d}.dcm")
    (folder / "README.TXT").write_text("Exported by a PACS.\n")
    shutil.copy(get_testdata_file("reportsi.dcm"), folder / "SR0001")  # a non-image object
    if not as_zip:
        return folder
    archive = root / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(root))
    shutil.rmtree(folder)
    return archive


def write_cases(cases: list[BuiltCase], images: Path, masks: Path) -> tuple[Path, Path]:
    """Each case's series under ``images/<patient>/<series>/`` and its mask under ``masks/``."""
    for index, case in enumerate(cases):
        for number, ds in enumerate(case.images):
            save(ds, images / case.patient_id / f"S{case.series_number}" / f"I{number}")
        save(case.mask, masks / f"mask_{index:02d}.dcm")
    return images, masks


def world_equal(volume: np.ndarray, affine: np.ndarray, ref: np.ndarray, ref_affine: np.ndarray):
    """Assert that two volumes hold the same values at the same patient positions."""
    to_ref = np.linalg.inv(ref_affine) @ affine
    assert np.allclose(to_ref[:3, :3], np.round(to_ref[:3, :3]), atol=1e-4), to_ref
    index = np.indices(volume.shape).reshape(3, -1)
    mapped = to_ref[:3, :3] @ index + to_ref[:3, 3:4]
    assert np.allclose(mapped, np.round(mapped), atol=1e-3)
    mapped = np.round(mapped).astype(int)
    assert np.array_equal(volume.reshape(-1), ref[tuple(mapped)])


def _run_squares(area: np.ndarray) -> list[list[tuple[float, float]]]:
    """Rectangles around the runs of voxels along x in each row y: their union is ``area``."""
    squares = []
    for y in range(area.shape[1]):
        row = np.r_[0, area[:, y].astype(np.int8), 0]
        starts, ends = np.flatnonzero(np.diff(row) == 1), np.flatnonzero(np.diff(row) == -1) - 1
        for x0, x1 in zip(starts, ends, strict=True):
            squares.append(
                [(x0 - 0.5, y - 0.5), (x1 + 0.5, y - 0.5), (x1 + 0.5, y + 0.5), (x0 - 0.5, y + 0.5)]
            )
    return squares


def rtstruct_for(
    sources: list[Dataset],
    labels: np.ndarray,
    affine: np.ndarray,
    names: tuple[str, ...] = ("GTV",),
    *,
    extra_contours: dict[int, list[np.ndarray]] | None = None,
) -> Dataset:
    """An RTSTRUCT with one ROI per label value 1..len(names), drawn as rectangles of runs.

    ``extra_contours`` adds contours (``(N, 3)`` points in mm) to ROI numbers.
    """
    inverse = np.linalg.inv(affine)
    by_slice = {
        int(round((inverse @ [*map(float, ds.ImagePositionPatient), 1.0])[2])): ds for ds in sources
    }
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    first = sources[0]
    for name in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        setattr(ds, name, first.get(name))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = str(hd.UID())
    ds.SeriesNumber = 200
    ds.SeriesDescription = "contours"
    ds.Manufacturer = "planning system"
    ds.StructureSetLabel = "PLAN"
    ds.StructureSetDate, ds.StructureSetTime = "20240102", "120000"
    refs = []
    for src in sources:
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        refs.append(ref)
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = refs
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = [series_ref]
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study_ref]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    structures, contours, observations = [], [], []
    for number, name in enumerate(names, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        item.ROIName = name
        item.ROIGenerationAlgorithm = "MANUAL"
        structures.append(item)
        roi = Dataset()
        roi.ROIDisplayColor = [255, 0, 0] if number == 1 else [0, 255, 0]
        roi.ReferencedROINumber = number
        items = []
        for z, src in sorted(by_slice.items()):
            for square in _run_squares(labels[:, :, z] == number):
                world = [affine @ [x, y, z, 1.0] for x, y in square]
                items.append(_contour(src, np.asarray(world)[:, :3]))
        for points in (extra_contours or {}).get(number, []):
            items.append(_contour(first, points))
        if items:
            roi.ContourSequence = items
        contours.append(roi)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "GTV" if number == 1 else "ORGAN"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = structures
    ds.ROIContourSequence = contours
    ds.RTROIObservationsSequence = observations
    return ds


def _contour(src: Dataset, points: np.ndarray) -> Dataset:
    image = Dataset()
    image.ReferencedSOPClassUID = src.SOPClassUID
    image.ReferencedSOPInstanceUID = src.SOPInstanceUID
    contour = Dataset()
    contour.ContourImageSequence = [image]
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.NumberOfContourPoints = len(points)
    contour.ContourData = [f"{v:.6f}" for v in np.asarray(points).ravel()]
    return contour


def group_series(objects: list[DicomObject]) -> tuple[dict[str, Series], Counter[str]]:
    """Every series among ``objects``, built and checked, and what was left out and why."""
    grouped = group_planes(objects)
    return {uid: grouped.build(uid) for uid in grouped.planes}, grouped.skipped
