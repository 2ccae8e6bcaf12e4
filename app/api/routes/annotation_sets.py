"""Annotation sets of a dataset and their masks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    AnnotationSetDep,
    AnnotatorAnnotationSetDep,
    AnnotatorDatasetDep,
    DatasetDep,
    Limit,
    Offset,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from app.api.docs import UPLOAD_BODY, errors_of
from app.api.upload import receive_upload
from app.db.enums import LabelTag, MaskSource, Undecided
from app.db.tables import AnnotationSet
from app.dicom_uploads import DicomUpload
from app.schemas import (
    AnnotationSetCreate,
    AnnotationSetOut,
    LineageOut,
    MaskOut,
    MasksAdded,
    Page,
)
from app.services import annotations as annotation_sets  # `annotations`: the __future__ name
from app.services import dicom, resolve

router = APIRouter(prefix="/v1/datasets/{dataset_id}/annotation-sets", tags=["annotation sets"])


def set_out(session: Session, aset: AnnotationSet) -> AnnotationSetOut:
    """The set as the API shows it: its tag, and a resolved set's lineage."""
    resolution = resolve.resolution_of(session, aset)
    lineage = None
    if resolution is not None:
        lineage = LineageOut(
            audit_id=resolution.audit_id,
            parent_set_id=resolution.parent_set_id,
            policy=Undecided(resolution.policy),
            resolved_by=resolution.resolved_by,
            key_id=resolution.key_id,
            resolved_at=resolution.created_at,
            sources={
                MaskSource(k): v for k, v in resolve.source_counts(session, resolution).items()
            },
        )
    return AnnotationSetOut(
        id=aset.id,
        dataset_id=aset.dataset_id,
        name=aset.name,
        description=aset.description,
        masks=annotation_sets.count_masks(session, aset),
        tag=LabelTag(aset.tag),
        lineage=lineage,
        classes=dict(aset.classes or {}),
        classes_declared=aset.classes_declared,
        created_at=aset.created_at,
    )


@router.post("", status_code=201, responses=errors_of(404, 409, 422))
def create_annotation_set(
    dataset: AnnotatorDatasetDep, body: AnnotationSetCreate, session: SessionDep
) -> AnnotationSetOut:
    """Create an empty annotation set (one annotator, team or re-annotation) for the dataset."""
    aset = annotation_sets.create_annotation_set(
        session, dataset, body.name, body.description, body.classes
    )
    return set_out(session, aset)


@router.get("", responses=errors_of(404))
def list_annotation_sets(
    dataset: DatasetDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[AnnotationSetOut]:
    """List the dataset's annotation sets, oldest first."""
    page = annotation_sets.list_annotation_sets(session, dataset, limit=limit, offset=offset)
    items = [set_out(session, a) for a in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{set_id}", responses=errors_of(404))
def get_annotation_set(aset: AnnotationSetDep, session: SessionDep) -> AnnotationSetOut:
    """One annotation set, with its number of masks."""
    return set_out(session, aset)


@router.post(
    "/{set_id}/masks",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses=errors_of(404, 409, 413, 422, 507),
)
async def upload_masks(
    aset: AnnotatorAnnotationSetDep,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> MasksAdded:
    """Add masks as files or one zip, matched to cases by file name without extension. DICOM:
    SEG or RTSTRUCT files (or a zip, e.g. the PACS export itself), matched to cases by the
    series they reference. A mask with no case, or another shape or geometry than its image
    (DICOM: a SEG off its series' grid, overlapping segments), refuses the upload (422, naming
    it) and nothing is kept.
    """
    notes: list[str] = []
    with store.staging() as folder:
        received = await receive_upload(request, settings, folder)
        if isinstance(received, DicomUpload):
            masks, notes = await run_in_threadpool(dicom.add_masks, session, store, aset, received)
        else:
            masks = await run_in_threadpool(
                annotation_sets.add_masks, session, store, aset, received
            )
    return MasksAdded(count=len(masks), masks=[MaskOut.of(m) for m in masks], notes=notes)


@router.get("/{set_id}/masks", responses=errors_of(404))
def list_masks(
    aset: AnnotationSetDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[MaskOut]:
    """List the set's masks by case name."""
    page = annotation_sets.list_masks(session, aset, limit=limit, offset=offset)
    items = [MaskOut.of(m) for m in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)
