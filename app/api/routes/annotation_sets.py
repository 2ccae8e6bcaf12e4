"""Annotation sets of a dataset and their masks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import Annotator, Limit, Offset, SessionDep, SettingsDep, StoreDep, Viewer
from app.api.docs import UPLOAD_BODY, errors_of
from app.api.upload import receive_upload
from app.db.tables import AnnotationSet
from app.dicom_uploads import DicomUpload
from app.schemas import AnnotationSetCreate, AnnotationSetOut, MaskOut, MasksAdded, Page
from app.services import annotations, datasets, dicom

router = APIRouter(prefix="/v1/datasets/{dataset_id}/annotation-sets", tags=["annotation sets"])


def _out(session: Session, aset: AnnotationSet) -> AnnotationSetOut:
    return AnnotationSetOut(
        id=aset.id,
        dataset_id=aset.dataset_id,
        name=aset.name,
        description=aset.description,
        masks=annotations.count_masks(session, aset),
        created_at=aset.created_at,
    )


@router.post("", status_code=201, responses=errors_of(404, 409, 422))
def create_annotation_set(
    dataset_id: int, body: AnnotationSetCreate, session: SessionDep, principal: Annotator
) -> AnnotationSetOut:
    """Create an empty annotation set (one annotator, team or re-annotation) for the dataset."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    aset = annotations.create_annotation_set(session, dataset, body.name, body.description)
    return _out(session, aset)


@router.get("", responses=errors_of(404))
def list_annotation_sets(
    dataset_id: int,
    session: SessionDep,
    principal: Viewer,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AnnotationSetOut]:
    """List the dataset's annotation sets, oldest first."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    page = annotations.list_annotation_sets(session, dataset, limit=limit, offset=offset)
    items = [_out(session, a) for a in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{set_id}", responses=errors_of(404))
def get_annotation_set(
    dataset_id: int, set_id: int, session: SessionDep, principal: Viewer
) -> AnnotationSetOut:
    """One annotation set, with its number of masks."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    return _out(session, annotations.get_annotation_set(session, dataset, set_id))


@router.post(
    "/{set_id}/masks",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses=errors_of(404, 409, 413, 422),
)
async def upload_masks(
    dataset_id: int,
    set_id: int,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    principal: Annotator,
) -> MasksAdded:
    """Add masks as files or one zip, matched to cases by file name without extension. DICOM:
    SEG or RTSTRUCT files (or a zip, e.g. the PACS export itself), matched to cases by the
    series they reference. A mask with no case, or another shape or geometry than its image
    (DICOM: a SEG off its series' grid, overlapping segments), refuses the upload (422, naming
    it) and nothing is kept.
    """

    def find() -> AnnotationSet:
        dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
        return annotations.get_annotation_set(session, dataset, set_id)

    aset = await run_in_threadpool(find)
    notes: list[str] = []
    with store.staging() as folder:
        received = await receive_upload(request, settings, folder)
        if isinstance(received, DicomUpload):
            masks, notes = await run_in_threadpool(dicom.add_masks, session, store, aset, received)
        else:
            masks = await run_in_threadpool(annotations.add_masks, session, store, aset, received)
    return MasksAdded(count=len(masks), masks=[MaskOut.of(m) for m in masks], notes=notes)


@router.get("/{set_id}/masks", responses=errors_of(404))
def list_masks(
    dataset_id: int,
    set_id: int,
    session: SessionDep,
    principal: Viewer,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[MaskOut]:
    """List the set's masks by case name."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    aset = annotations.get_annotation_set(session, dataset, set_id)
    page = annotations.list_masks(session, aset, limit=limit, offset=offset)
    items = [MaskOut.of(m) for m in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)
