"""Cases from DICOM: each image series paired with the one SEG or RTSTRUCT drawn on it.

Masks name their series by Series Instance UID, so pairing needs no file names; a case is named
by a pseudonym made from its study and series UIDs (``labels.pseudonym``), never by anything
that identifies the patient, since case names go into URLs, file names and logs.
Segments and ROIs become dataset-wide classes 1..K in order of first appearance, matched across
cases by ``Segment.key`` / ``Roi.key``, so that class 2 means the same structure in every case.
Image series that no mask references (localizers, other sequences of a study) are left out
with a note; what is left out and why is logged to ``segaudit.dicom`` and kept in ``notes``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from imaging.classes import named_classes
from imaging.dicom import rtstruct, seg
from imaging.dicom.labels import PSEUDONYM_DIGITS, pseudonym
from imaging.dicom.series import Grouped, Series, group_planes
from imaging.dicom.source import DicomObject, Scan, scan
from imaging.errors import ErrorCode, InputError
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG, Loaded

# Why a SEG cannot be written for a series split over several multi-frame instances.
SPLIT_MULTIFRAME = (
    "it is split over several multi-frame instances, and a SEG can reference the frames of "
    "one multi-frame instance or single-frame instances only"
)

log = logging.getLogger("segaudit.dicom")


@dataclass(frozen=True)
class MaskSource:
    """What writing a mask back into DICOM needs: the input mask, its series and classes.

    ``classes`` maps the input's segment (or ROI) numbers to classes; ``catalogue`` holds, for
    every class of the dataset, a segment (or ROI) that describes it, for classes that this
    case's input lacks but its cleansed mask has.
    """

    fmt: str  # DICOM_SEG or DICOM_RTSTRUCT
    obj: DicomObject
    series: Series
    classes: dict[int, int]
    catalogue: dict[int, seg.Segment | rtstruct.Roi]

    def class_names(self) -> dict[str, int]:
        """The dataset's classes named by their segment labels or ROI names ``{name: class}``."""
        return named_classes(
            {
                cls: unit.label if isinstance(unit, seg.Segment) else unit.name
                for cls, unit in self.catalogue.items()
            }
        )


@dataclass(frozen=True)
class DicomPair:
    """One case: an image series and the mask that references it."""

    case_id: str
    series: Series
    mask: MaskSource

    @property
    def image_path(self) -> Path:
        return self.series.planes[0].source.path

    @property
    def mask_path(self) -> Path:
        return self.mask.obj.source.path

    def read_image(self) -> Loaded:
        """The series as float32 ``(1, X, Y, Z)`` with its geometry."""
        return Loaded(self.series.read(case=self.case_id)[None], self.series.geometry())

    def read_mask(self) -> Loaded:
        """The mask as class indices ``(X, Y, Z)`` on the series' grid."""
        reader = seg.read_labels if self.mask.fmt == DICOM_SEG else rtstruct.read_labels
        labels = reader(self.mask.obj, self.series, self.mask.classes, case=self.case_id)
        return Loaded(labels, self.series.geometry(self.mask.fmt, self.mask))


def _kind(obj: DicomObject) -> str | None:
    if obj.sop_class in seg.SEG_CLASSES:
        return DICOM_SEG
    if obj.sop_class == rtstruct.RTSTRUCT_CLASS:
        return DICOM_RTSTRUCT
    return None


def case_names(series: list[Series]) -> dict[str, str]:
    """Series UID -> pseudonymous, stable case name; unique within ``series``. A name that two
    series would share (one chance in 2^64 per pair) is lengthened for both to 128 bits a UID.
    """
    names = {s.series_uid: pseudonym(s.study_uid, s.series_uid) for s in series}
    counts = Counter(names.values())
    for s in series:
        if counts[names[s.series_uid]] > 1:
            names[s.series_uid] = pseudonym(s.study_uid, s.series_uid, digits=4 * PSEUDONYM_DIGITS)
    return names


def _units(obj: DicomObject, fmt: str) -> list[seg.Segment | rtstruct.Roi]:
    """The segments of a SEG, or the fillable ROIs of an RTSTRUCT, in number order."""
    if fmt == DICOM_SEG:
        return list(seg.segments_of(obj.header))
    return [r for r in rtstruct.rois_of(obj.header) if not r.only_points_or_lines]


def _target(obj: DicomObject, fmt: str, grouped: Grouped, where: Path) -> str:
    """The UID of the series a mask references; raises missing_image when it is not there."""
    name = obj.source.name
    what = "SEG" if fmt == DICOM_SEG else "RTSTRUCT"
    module = seg if fmt == DICOM_SEG else rtstruct
    uids: list[str] = list(dict.fromkeys(module.referenced_series(obj.header)))
    instances: set[str] = module.referenced_instances(obj.header)
    if not uids:  # no series reference: find the series by the instances it lists
        uids = [u for u in grouped.headers if instances & grouped.instances(u)]
    present = [u for u in uids if u in grouped.headers]
    if not present:
        shown = ", ".join(uids) if uids else "no series at all"
        raise InputError(
            ErrorCode.MISSING_IMAGE,
            f"{what} {name} references {shown}, which is not among the image series in {where}",
            case=name,
        )
    if len(present) > 1:
        raise InputError(
            ErrorCode.DUPLICATE_CASE,
            f"{what} {name} references {len(present)} image series; segaudit pairs each mask "
            "with one series",
            case=name,
        )
    target = present[0]
    missing = instances - grouped.instances(target)
    if missing:
        raise InputError(
            ErrorCode.MISSING_IMAGE,
            f"{what} {name} references {len(missing)} images that {grouped.label(target)} lacks "
            f"(for example {sorted(missing)[0]}): the series is incomplete",
            case=name,
        )
    return target


def _without_own(
    masks: list[tuple[DicomObject, str]], grouped: Grouped, where: Path
) -> tuple[list[tuple[DicomObject, str]], int]:
    """The masks less those segaudit wrote for a series that has a mask of another maker (its
    own cleansed SEG, pushed back to the PACS beside the original, would pair twice); and how
    many were left out. A series that only segaudit's masks reference keeps them.
    """
    others = {_target(o, k, grouped, where) for o, k in masks if not o.made_by_segaudit}
    kept = [
        (o, k)
        for o, k in masks
        if not o.made_by_segaudit or _target(o, k, grouped, where) not in others
    ]
    return kept, len(masks) - len(kept)


def _scan_once(images: Path, masks: Path) -> tuple[Scan, Scan]:
    image_scan = scan(images)
    same = Path(images).resolve() == Path(masks).resolve()
    return image_scan, image_scan if same else scan(masks)


def find_pairs(images: Path, masks: Path) -> tuple[list[DicomPair], list[str]]:
    """Pair every mask under ``masks`` with its series under ``images``; return notes too.

    Raises ``InputError`` on the first problem: empty_folder, missing_image (a mask whose
    series or images are missing), duplicate_case (two masks for one series),
    unsupported_format (SEG mixed with RTSTRUCT), series_inconsistent, unreadable_file.
    """
    image_scan, mask_scan = _scan_once(Path(images), Path(masks))
    notes = list(image_scan.notes) + (mask_scan.notes if mask_scan is not image_scan else [])
    grouped = group_planes([o for o in image_scan.objects if _kind(o) is None])
    for what, count in sorted(grouped.skipped.items()):
        notes.append(f"left out {count} objects that are not images to audit: {what}")
    mask_objects = [(o, kind) for o in mask_scan.objects if (kind := _kind(o)) is not None]
    if not grouped.planes:
        raise InputError(ErrorCode.EMPTY_FOLDER, f"{images} holds no DICOM image series")
    if not mask_objects:
        raise InputError(
            ErrorCode.EMPTY_FOLDER,
            f"{masks} holds no DICOM SEG or RTSTRUCT objects; DICOM image series are paired "
            "with the SEG or RTSTRUCT masks that reference them",
        )
    if len({kind for _, kind in mask_objects}) > 1:
        raise InputError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{masks} mixes SEG and RTSTRUCT masks; audit each kind separately",
        )
    mask_objects, own = _without_own(mask_objects, grouped, Path(images))
    if own:
        notes.append(
            f"left out {own} masks that segaudit wrote (Manufacturer 'segaudit') for series "
            "that also have a mask of their own"
        )
    targets: dict[str, tuple[DicomObject, str]] = {}
    for obj, kind in mask_objects:
        target = _target(obj, kind, grouped, Path(images))
        if target in targets:
            first = targets[target][0].source.name
            raise InputError(
                ErrorCode.DUPLICATE_CASE,
                f"two masks reference {grouped.label(target)}: {first} and {obj.source.name}",
                case=obj.source.name,
            )
        targets[target] = (obj, kind)
    # Only referenced series must be regular: a localizer nobody segmented may mix orientations.
    series = {uid: grouped.build(uid) for uid in targets}
    for uid, s in series.items():
        split = len(s.headers) > 1 and any(p.frame is not None for p in s.planes)
        if targets[uid][1] == DICOM_SEG and split:
            raise InputError(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"cannot audit {s.label} with a SEG: {SPLIT_MULTIFRAME}",
                case=targets[uid][0].source.name,
            )
    unused = [grouped.label(u) for u in grouped.headers if u not in targets]
    if unused:
        shown = "; ".join(unused[:3]) + (" ..." if len(unused) > 3 else "")
        notes.append(f"left out {len(unused)} image series that no mask references: {shown}")
    names = case_names(list(series.values()))
    ordered = sorted(targets, key=lambda uid: names[uid])
    keys: dict[str, int] = {}
    catalogue: dict[int, seg.Segment | rtstruct.Roi] = {}
    pairs = []
    for uid in ordered:
        obj, kind = targets[uid]
        classes: dict[int, int] = {}
        used: Counter[str] = Counter()
        for unit in _units(obj, kind):
            used[unit.key] += 1  # a repeated key within one mask stays a class of its own
            key = unit.key if used[unit.key] == 1 else f"{unit.key}#{used[unit.key]}"
            if key not in keys:
                keys[key] = len(keys) + 1
                catalogue[keys[key]] = unit
            classes[unit.number] = keys[key]
        if kind == DICOM_RTSTRUCT:
            dropped = [r.name for r in rtstruct.rois_of(obj.header) if r.only_points_or_lines]
            if dropped:
                notes.append(
                    f"{obj.source.name}: left out ROIs drawn only as points or open lines: "
                    + ", ".join(dropped)
                )
        source = MaskSource(kind, obj, series[uid], classes, catalogue)
        pairs.append(DicomPair(names[uid], series[uid], source))
    for note in notes:
        log.warning("note: %s", note)
    return pairs, notes
