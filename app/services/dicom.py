"""DICOM datasets: each image series of a PACS export becomes a case, and SEG or RTSTRUCT masks
are matched to the cases by the series they reference, with ``imaging.dicom``'s own checks, all
run before anything is kept.

A case's image file is its series as one blob: an uncompressed zip of its instances as they
were received, named ``<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` and written the same way for
the same instances, so that it is content-addressed like every other file. ``run_audit`` reads
a folder of such zips (``lifecycle.stage_inputs`` links them as ``<case>.zip``) as it reads a PACS
export; a mask is its SEG or RTSTRUCT file, stored as ``<case>.dcm``.

Case names are ``imaging.dicom``'s pseudonyms (``<study hash>-<series hash>``, from UIDs alone),
so no URL, log line or error message carries the patient. The engine names the cases of an
audit again from the series it is given, and lengthens a name only when two of them share it;
so two series that would share a name are refused here, and the names stay the same. The
patient-facing labels (``imaging.dicom.labels``) are kept on the case, for the roles that may
see them (``Principal.sees_patient_labels``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from app.db.tables import AnnotationSet, Case, Dataset, Mask, StoredFile
from app.dicom_uploads import DicomUpload
from app.errors import Conflict, Invalid
from app.services.classes import Held, check_classes_of, record_classes
from app.services.files import publishing
from app.storage import CHUNK, Store, Written
from imaging.classes import mask_values
from imaging.dicom import rtstruct, seg
from imaging.dicom.cases import case_names, find_pairs  # case names: the engine's own rule
from imaging.dicom.labels import labels_of
from imaging.dicom.series import Series, group_planes
from imaging.dicom.source import DicomObject, scan
from imaging.errors import ErrorCode, InputError
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG

SERIES_FORMAT = "dicom-series"  # files.format of a case's series zip
KIND_NAMES = {DICOM_SEG: "SEG", DICOM_RTSTRUCT: "RTSTRUCT"}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # one fixed time stamp: the same instances, the same zip


def is_dicom_dataset(session: Session, dataset_id: int) -> bool | None:
    """Whether the dataset's cases are DICOM series (True) or image files (False); None while
    it has no case.
    """
    fmt = session.scalar(
        select(StoredFile.format)
        .join(Case, Case.image_file_id == StoredFile.id)
        .where(Case.dataset_id == dataset_id)
        .limit(1)
    )
    return None if fmt is None else fmt == SERIES_FORMAT


def series_uid_of(path: Path) -> str:
    """The Series Instance UID of a stored series zip (its members' folder)."""
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()[0].split("/", 1)[0]


def _refused(
    exc: InputError,
    upload: DicomUpload,
    *,
    file: str | None = None,
    folders: dict[Path, str] | None = None,
) -> Invalid:
    """The engine's refusal as a 422 that names the received file, with no server paths."""
    text = str(exc)
    by_name = upload.file_in("", exc.case)  # find_pairs names a mask's file as its "case"
    if by_name is not None:
        text = text.removeprefix(f"case '{exc.case}': ")
    chosen = file or upload.file_in(text) or by_name  # None: the upload as a whole
    return Invalid(exc.code, upload.describe(text, folders), file=chosen)


def _hashed(path: Path) -> Written:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return Written(path, digest.hexdigest(), path.stat().st_size)


def write_series(series: Series, dest: Path) -> Written:
    """The series' instances, byte for byte, in one uncompressed zip at ``dest``."""
    sources = {plane.sop_instance_uid: plane.source for plane in series.planes}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for sop in sorted(sources):
            path = sources[sop].path  # a plain file: the upload's zips are unpacked
            info = zipfile.ZipInfo(f"{series.series_uid}/{sop}.dcm", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.file_size = path.stat().st_size
            with path.open("rb") as src, zf.open(info, "w") as out:
                shutil.copyfileobj(src, out, CHUNK)
    return _hashed(dest)


# Images: a PACS export in, one case per series.


def _check_series(upload: DicomUpload) -> tuple[list[Series], list[str]]:
    """Every image series in the upload, checked and read once; notes on what was left out."""
    try:
        found = scan(upload.root)
    except InputError as exc:
        raise _refused(exc, upload) from None
    upload = upload.scrubbed(o.header for o in found.objects)
    try:
        grouped = group_planes(found.objects)
    except InputError as exc:
        raise _refused(exc, upload) from None
    notes = [upload.describe(n) for n in found.notes] + [
        f"left out {count} objects that are not images to audit: {what}"
        for what, count in sorted(grouped.skipped.items())
    ]
    if not grouped.planes:
        shown = f" ({'; '.join(notes)})" if notes else ""
        raise Invalid(
            ErrorCode.EMPTY_FOLDER,
            f"{upload.label} holds no DICOM image series{shown}",
        )
    checked = []
    for uid in grouped.planes:
        # A fault of the series as a whole is the fault of the file (or zip) it came in.
        part = upload.name_of(grouped.planes[uid][0].source.path).split(":", 1)[0]
        try:
            series = grouped.build(uid)
            volume = series.read()
        except InputError as exc:
            raise _refused(exc, upload, file=upload.file_in(str(exc)) or part) from None
        if not np.all(np.isfinite(volume)):
            raise Invalid(
                ErrorCode.IMAGE_NOT_FINITE,
                f"{series.label} holds NaN or infinite values",
                file=part,
            )
        checked.append(series)
    return checked, notes


def _name_cases(
    session: Session, store: Store, dataset: Dataset, series: list[Series]
) -> dict[str, str]:
    """Series UID -> case name; refuses two series of one name, and names the dataset has."""
    names: dict[str, str] = {}
    by_name: dict[str, Series] = {}
    for s in series:
        name = case_names([s])[s.series_uid]
        if name in by_name:
            raise Invalid(
                ErrorCode.DUPLICATE_CASE,
                f"{by_name[name].label} and {s.label} would both be case '{name}' (their UIDs "
                "hash alike); upload them into separate datasets",
            )
        by_name[name] = s
        names[s.series_uid] = name
    existing = session.execute(
        select(Case.name, StoredFile.sha256)
        .join(StoredFile, StoredFile.id == Case.image_file_id)
        .where(Case.dataset_id == dataset.id, Case.name.in_(list(by_name)))
    ).first()
    if existing is not None:
        name, sha = existing
        same = store.has(sha) and series_uid_of(store.path(sha)) == by_name[name].series_uid
        what = "this series" if same else "another series whose UIDs hash alike"
        raise Conflict(
            ErrorCode.CASE_EXISTS,
            f"{by_name[name].label}: dataset {dataset.id} already has a case named '{name}' "
            f"({what}); cases are never replaced",
        )
    return names


def add_series(
    session: Session, store: Store, dataset: Dataset, upload: DicomUpload
) -> tuple[list[Case], list[str]]:
    """Check every image series of a DICOM upload, then store each as a new case (its series
    zip and its geometry); all or nothing. Commits. Returns the cases and notes on what was
    left out (files that are not DICOM, DICOMDIRs, objects that are not images).
    """
    if is_dicom_dataset(session, dataset.id) is False:
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"dataset {dataset.id} holds image files (PNG, TIFF, NIfTI, NRRD); DICOM series go "
            "into a dataset of their own",
        )
    series, notes = _check_series(upload)
    names = _name_cases(session, store, dataset, series)
    folder = upload.root.parent / "series"
    folder.mkdir()
    cases = []
    try:
        with publishing(session, store) as add_file:
            for s in sorted(series, key=lambda s: names[s.series_uid]):
                name = names[s.series_uid]
                written = write_series(s, folder / f"{name}.zip")
                case = Case(
                    dataset_id=dataset.id,
                    name=name,
                    image=add_file(written, f"{name}.zip", SERIES_FORMAT),
                    shape=[int(n) for n in s.shape],
                    spacing=[float(v) for v in s.spacing],
                    affine=np.asarray(s.affine, float).tolist(),
                    channels=1,
                    dicom_labels=labels_of(next(iter(s.headers.values()))),
                )
                session.add(case)
                cases.append(case)
    except IntegrityError:  # the same case name, uploaded at the same time by someone else
        raise Conflict(
            ErrorCode.CASE_EXISTS, f"dataset {dataset.id} received some of these series meanwhile"
        ) from None
    return cases, notes


# Masks: SEG or RTSTRUCT objects, matched to the dataset's series.


def mask_kind(obj: DicomObject) -> str | None:
    """DICOM_SEG, DICOM_RTSTRUCT, or None for an object that is no mask."""
    if obj.sop_class in seg.SEG_CLASSES:
        return DICOM_SEG
    return DICOM_RTSTRUCT if obj.sop_class == rtstruct.RTSTRUCT_CLASS else None


def _referenced(obj: DicomObject) -> list[str]:
    module = seg if mask_kind(obj) == DICOM_SEG else rtstruct
    return list(dict.fromkeys(module.referenced_series(obj.header)))


def _dicom_cases(session: Session, store: Store, dataset_id: int) -> dict[str, Case]:
    """The dataset's cases by Series Instance UID."""
    cases = session.scalars(
        select(Case).options(joinedload(Case.image)).where(Case.dataset_id == dataset_id)
    )
    return {series_uid_of(store.path(c.image.sha256)): c for c in cases}


def _masks_only(upload: DicomUpload, masks: list[DicomObject], dest: Path) -> DicomUpload:
    """Move the mask files of an upload into ``dest`` (one folder each), as an upload."""
    shown = {}
    for index, obj in enumerate(masks):
        target = dest / f"{index:06d}" / obj.source.path.name
        target.parent.mkdir(parents=True)
        os.replace(obj.source.path, target)
        shown[target] = upload.name_of(obj.source.path)
    return DicomUpload(dest, shown, upload.label, upload.hidden)


def _stage_series(
    cases: dict[str, Case], uids: set[str] | None, store: Store, folder: Path
) -> Path:
    """Link the series zips of ``uids`` (None: all) into ``folder`` as ``find_pairs`` reads them."""
    folder.mkdir(parents=True)
    for uid, case in cases.items():
        if uids is None or uid in uids:
            (folder / f"{case.name}.zip").symlink_to(store.path(case.image.sha256))
    return folder


@dataclass(frozen=True)
class _Checked:
    """One received mask, read on its case's grid."""

    path: Path
    file: str  # as the client named it
    kind: str  # DICOM_SEG or DICOM_RTSTRUCT
    case: Case
    max_label: int
    names: dict[str, int]  # the classes it holds: {segment label or ROI name: class}


def _match(
    session: Session, store: Store, aset: AnnotationSet, upload: DicomUpload
) -> tuple[list[_Checked], list[str]]:
    """Each mask of the upload paired with its case and read; notes on what was left out."""
    try:
        found = scan(upload.root)
    except InputError as exc:
        raise _refused(exc, upload) from None
    upload = upload.scrubbed(o.header for o in found.objects)
    masks = [o for o in found.objects if mask_kind(o) is not None]
    notes = [upload.describe(n) for n in found.notes]
    if len(masks) < len(found.objects):
        others = len(found.objects) - len(masks)
        notes.append(f"left out {others} DICOM objects that are not SEG or RTSTRUCT masks")
    if not masks:
        raise Invalid(
            ErrorCode.EMPTY_FOLDER,
            f"{upload.label} holds no DICOM SEG or RTSTRUCT object; masks of a DICOM dataset "
            "are the SEG or RTSTRUCT objects drawn on its series",
        )
    cases = _dicom_cases(session, store, aset.dataset_id)
    wanted: set[str] | None = set()
    for obj in masks:
        uids = _referenced(obj)
        if not uids:  # no series reference: the engine finds the series by its instances
            wanted = None
            continue
        if not any(u in cases for u in uids):
            file = upload.name_of(obj.source.path)
            raise Invalid(
                ErrorCode.MISSING_IMAGE,
                f"{file}: the {KIND_NAMES[mask_kind(obj) or DICOM_SEG]} references series "
                f"{', '.join(uids)}, which dataset {aset.dataset_id} does not hold; upload the "
                "series first",
                file=file,
            )
        if wanted is not None:
            wanted.update(uids)
    work = upload.root.parent / "match"
    images = _stage_series(cases, wanted, store, work / "images")
    masks_upload = _masks_only(upload, masks, work / "masks")
    where = {images: f"dataset {aset.dataset_id}"}
    try:
        pairs, more = find_pairs(images, masks_upload.root)
    except InputError as exc:
        raise _refused(exc, masks_upload, folders=where) from None
    # The staged series are the dataset's, not the upload's: that some have no mask is no news.
    notes += [n for n in more if "image series that no mask references" not in n]
    checked = []
    for pair in pairs:
        file = masks_upload.name_of(pair.mask_path)
        try:
            labels = pair.read_mask().array
        except InputError as exc:
            raise _refused(exc, masks_upload, file=file, folders=where) from None
        case = cases[pair.series.series_uid]
        present = set(mask_values(labels))
        names = {n: v for n, v in pair.mask.class_names().items() if v in present}
        checked.append(
            _Checked(pair.mask_path, file, pair.mask.fmt, case, int(labels.max()), names)
        )
    return checked, notes


def add_masks(
    session: Session, store: Store, aset: AnnotationSet, upload: DicomUpload
) -> tuple[list[Mask], list[str]]:
    """Match each SEG or RTSTRUCT of a DICOM upload to the case of the series it references,
    read it on that series' grid, then store them all; all or nothing. Commits. Returns the
    masks and notes on what was left out.
    """
    dicom = is_dicom_dataset(session, aset.dataset_id)
    if not dicom:
        why = (
            "holds image files: their masks are files named after their case"
            if dicom is False
            else "has no DICOM series yet: upload the PACS export as its images first"
        )
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"dataset {aset.dataset_id} {why}",
        )
    checked, notes = _match(session, store, aset, upload)
    held = set(
        session.scalars(
            select(StoredFile.format)
            .join(Mask, Mask.file_id == StoredFile.id)
            .where(Mask.annotation_set_id == aset.id)
        )
    )
    for item in checked:
        if held - {item.kind}:  # an audit pairs one kind of mask: find_pairs refuses a mix
            have = " and ".join(KIND_NAMES.get(k, k) for k in sorted(held))
            raise Invalid(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"{item.file}: annotation set {aset.id} holds {have} masks and this is a "
                f"{KIND_NAMES[item.kind]}; upload it into another annotation set",
                file=item.file,
            )
    taken = set(session.scalars(select(Mask.case_id).where(Mask.annotation_set_id == aset.id)))
    for item in checked:
        if item.case.id in taken:
            raise Conflict(
                ErrorCode.MASK_EXISTS,
                f"{item.file}: annotation set {aset.id} already has a mask for "
                f"'{item.case.name}'; masks are never replaced (upload a re-annotation as a "
                "new set)",
                file=item.file,
            )
    holds = [Held(c.file, c.max_label, names=c.names) for c in checked]
    check_classes_of(aset, holds)
    masks = []
    try:
        with publishing(session, store) as add_file:
            record_classes(session, aset, holds)
            for item in sorted(checked, key=lambda c: c.case.name):
                stored = add_file(_hashed(item.path), f"{item.case.name}.dcm", item.kind)
                mask = Mask(
                    annotation_set_id=aset.id,
                    case=item.case,
                    file=stored,
                    max_label=item.max_label,
                )
                session.add(mask)
                masks.append(mask)
    except IntegrityError:
        raise Conflict(
            ErrorCode.MASK_EXISTS,
            f"annotation set {aset.id} received some of these masks meanwhile",
        ) from None
    return masks, notes
