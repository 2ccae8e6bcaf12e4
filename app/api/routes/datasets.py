"""Datasets and their cases."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    Annotator,
    AnnotatorDatasetDep,
    DatasetDep,
    Limit,
    Offset,
    SessionDep,
    SettingsDep,
    StoreDep,
    Viewer,
)
from app.api.docs import UPLOAD_BODY, errors_of
from app.api.upload import receive_upload
from app.db.tables import Case, Dataset
from app.dicom_uploads import DicomUpload
from app.schemas import CaseOut, CasesAdded, DatasetCreate, DatasetOut, Page
from app.services import datasets, dicom

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _out(session: Session, dataset: Dataset) -> DatasetOut:
    cases = session.scalar(select(func.count()).where(Case.dataset_id == dataset.id)) or 0
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        cases=cases,
        created_at=dataset.created_at,
    )


@router.post("", status_code=201, responses=errors_of(409, 422))
def create_dataset(body: DatasetCreate, session: SessionDep, principal: Annotator) -> DatasetOut:
    """Create an empty dataset; add images to it with POST /v1/datasets/{id}/images."""
    dataset = datasets.create_dataset(session, principal.project_id, body.name, body.description)
    return _out(session, dataset)


@router.get("", responses=errors_of())
def list_datasets(
    session: SessionDep, principal: Viewer, limit: Limit = 50, offset: Offset = 0
) -> Page[DatasetOut]:
    """List the project's datasets, oldest first."""
    page = datasets.list_datasets(session, principal.project_id, limit=limit, offset=offset)
    items = [_out(session, d) for d in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{dataset_id}", responses=errors_of(404))
def get_dataset(dataset: DatasetDep, session: SessionDep) -> DatasetOut:
    """One dataset, with its number of cases."""
    return _out(session, dataset)


@router.post(
    "/{dataset_id}/images",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses=errors_of(404, 409, 413, 422, 507),
)
async def upload_images(
    dataset: AnnotatorDatasetDep,
    principal: Annotator,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> CasesAdded:
    """Add images as files or one zip (folders in it are flattened): each becomes a case named
    after its file. DICOM: a PACS export (files or zips, nested any way, with or without a
    DICOMDIR), where each image series becomes a case named by a pseudonym of its study and
    series UIDs (its patient labels shown to reviewers and admins only), and what is not an
    image is left out with a note. Every image is read and checked first;
    one bad file refuses the upload and nothing is kept.
    """
    notes: list[str] = []
    with store.staging() as folder:
        received = await receive_upload(request, settings, folder)
        if isinstance(received, DicomUpload):
            cases, notes = await run_in_threadpool(
                dicom.add_series, session, store, dataset, received
            )
        else:
            cases = await run_in_threadpool(datasets.add_images, session, store, dataset, received)
    labels = principal.sees_patient_labels
    return CasesAdded(
        count=len(cases), cases=[CaseOut.of(c, labels=labels) for c in cases], notes=notes
    )


@router.get("/{dataset_id}/cases", responses=errors_of(404))
def list_cases(
    dataset: DatasetDep,
    principal: Viewer,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[CaseOut]:
    """List the dataset's cases by name; a DICOM case's patient labels for reviewers and admins."""
    page = datasets.list_cases(session, dataset, limit=limit, offset=offset)
    items = [CaseOut.of(c, labels=principal.sees_patient_labels) for c in page.items]
    return Page(items=items, total=page.total, limit=limit, offset=offset)
