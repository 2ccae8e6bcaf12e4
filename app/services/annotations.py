"""Annotation sets and their masks, matched to the dataset's cases by name."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.tables import AnnotationSet, Case, Dataset, Mask
from app.errors import Conflict, Invalid, NotFound, ServiceError
from app.services.checks import check_mask
from app.services.classes import Held, check_classes_of, record_classes
from app.services.dicom import is_dicom_dataset
from app.services.files import publishing
from app.services.pages import Page, paginate
from app.storage import Store
from app.uploads import Incoming
from imaging.classes import check_classes
from imaging.errors import ErrorCode, InputError


def create_annotation_set(
    session: Session,
    dataset: Dataset,
    name: str,
    description: str = "",
    classes: Mapping[str, int] | None = None,
) -> AnnotationSet:
    """A new, empty set of masks for ``dataset``; ``classes`` (``{name: value}``) declared, else
    inferred from its masks as they arrive. Commits.
    """
    declared: dict[str, int] = {}
    if classes is not None:
        try:
            declared = check_classes(classes)
        except InputError as exc:
            raise ServiceError.invalid_input(exc) from None
    aset = AnnotationSet(
        dataset_id=dataset.id,
        name=name,
        description=description,
        classes=declared,
        classes_declared=classes is not None,
    )
    session.add(aset)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            ErrorCode.ANNOTATION_SET_EXISTS,
            f"dataset {dataset.id} already has an annotation set named '{name}'",
        ) from None
    return aset


def list_annotation_sets(
    session: Session, dataset: Dataset, *, limit: int, offset: int
) -> Page[AnnotationSet]:
    query = (
        select(AnnotationSet)
        .where(AnnotationSet.dataset_id == dataset.id)
        .order_by(AnnotationSet.id)
    )
    return paginate(session, query, limit=limit, offset=offset)


def get_annotation_set(session: Session, dataset: Dataset, set_id: int) -> AnnotationSet:
    aset = session.get(AnnotationSet, set_id)
    if aset is None or aset.dataset_id != dataset.id:
        raise NotFound(ErrorCode.NOT_FOUND, f"no annotation set {set_id} in dataset {dataset.id}")
    return aset


def count_masks(session: Session, aset: AnnotationSet) -> int:
    query = select(func.count()).where(Mask.annotation_set_id == aset.id)
    return int(session.scalar(query) or 0)


def list_masks(session: Session, aset: AnnotationSet, *, limit: int, offset: int) -> Page[Mask]:
    query = (
        select(Mask)
        .join(Case, Case.id == Mask.case_id)
        .where(Mask.annotation_set_id == aset.id)
        .order_by(Case.name)
    )
    return paginate(session, query, limit=limit, offset=offset)


def add_masks(
    session: Session, store: Store, aset: AnnotationSet, files: list[Incoming]
) -> list[Mask]:
    """Match each mask to its case, check it, then store them all; all or nothing. Commits."""
    if files and is_dicom_dataset(session, aset.dataset_id):
        first = min(files, key=lambda f: f.case).name
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{first}: dataset {aset.dataset_id} holds DICOM series; their masks are DICOM SEG "
            "or RTSTRUCT files (or a zip of them)",
            file=first,
        )
    cases = {
        c.name: c for c in session.scalars(select(Case).where(Case.dataset_id == aset.dataset_id))
    }
    taken = set(session.scalars(select(Mask.case_id).where(Mask.annotation_set_id == aset.id)))
    checked = []
    for item in sorted(files, key=lambda f: f.case):
        case = cases.get(item.case)
        if case is None:
            raise Invalid(
                ErrorCode.MISSING_IMAGE,
                f"{item.name}: dataset {aset.dataset_id} has no case named '{item.case}'; "
                "masks are matched to images by file name without extension",
                file=item.name,
            )
        if case.id in taken:
            raise Conflict(
                ErrorCode.MASK_EXISTS,
                f"{item.name}: annotation set {aset.id} already has a mask for '{item.case}'; "
                f"delete it first (DELETE .../masks/{item.case}) while no audit has used the set, "
                "or upload a re-annotation as a new set",
                file=item.name,
            )
        checked.append((item, case, check_mask(item, case)))
    held = [Held(item.shown, info.max_label, info.values) for item, _, info in checked]
    check_classes_of(aset, held)
    masks = []
    try:
        with publishing(session, store) as add_file:
            record_classes(session, aset, held)
            for item, case, info in checked:
                mask = Mask(
                    annotation_set_id=aset.id,
                    case=case,
                    file=add_file(item.written, item.name),
                    max_label=info.max_label,
                )
                session.add(mask)
                masks.append(mask)
    except IntegrityError:
        raise Conflict(
            ErrorCode.MASK_EXISTS,
            f"annotation set {aset.id} received some of these masks meanwhile",
        ) from None
    return masks
