"""Deleting datasets, annotation sets, masks and audits (storage reclaimed).

An admin key may delete any of them. An annotator key may delete a dataset or an annotation set
that no audit has used yet: what a failed or mistaken upload left, such as an empty set; and a
mask of such a set, to upload a corrected one in its place.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.deps import (
    Annotator,
    AnnotatorAnnotationSetDep,
    AnnotatorDatasetDep,
    RememberedDep,
    SessionDep,
    StoreDep,
    audit_dep,
)
from app.api.docs import errors_of
from app.db.enums import Role
from app.db.tables import Audit
from app.errors import Forbidden
from app.schemas import Deleted
from app.services import removal
from app.services.keys import Principal
from imaging.errors import ErrorCode

router = APIRouter(tags=["deletion"])
AdminAuditDep = Annotated[Audit, Depends(audit_dep(Role.admin))]


def _admin_once_audited(principal: Principal, audited: bool, what: str) -> None:
    if audited and not principal.may(Role.admin):
        raise Forbidden(
            ErrorCode.FORBIDDEN,
            f"{what} has audits; deleting it needs a key with role 'admin'",
        )


@router.delete("/v1/datasets/{dataset_id}", responses=errors_of(404, 409))
def delete_dataset(
    dataset: AnnotatorDatasetDep,
    principal: Annotator,
    session: SessionDep,
    store: StoreDep,
    remembered: RememberedDep,
) -> Deleted:
    """Delete a dataset with its cases, annotation sets, masks, audits and results (admin; an
    annotator while no audit used it). Stored files nothing else uses are removed.
    """
    audited = removal.has_audits(session, dataset_id=dataset.id)
    _admin_once_audited(principal, audited, f"dataset {dataset.id}")
    blobs = removal.delete_dataset(session, store, dataset)
    remembered.forget_audits()
    return Deleted(deleted="dataset", id=dataset.id, blobs_removed=blobs)


@router.delete("/v1/datasets/{dataset_id}/annotation-sets/{set_id}", responses=errors_of(404, 409))
def delete_annotation_set(
    aset: AnnotatorAnnotationSetDep,
    principal: Annotator,
    session: SessionDep,
    store: StoreDep,
    remembered: RememberedDep,
) -> Deleted:
    """Delete an annotation set with its masks and the audits of it (admin; an annotator while
    no audit used it). Stored files nothing else uses are removed.
    """
    audited = removal.has_audits(session, dataset_id=aset.dataset_id, annotation_set_id=aset.id)
    _admin_once_audited(principal, audited, f"annotation set {aset.id}")
    blobs = removal.delete_annotation_set(session, store, aset)
    remembered.forget_audits()
    return Deleted(deleted="annotation_set", id=aset.id, blobs_removed=blobs)


@router.delete(
    "/v1/datasets/{dataset_id}/annotation-sets/{set_id}/masks/{case}",
    responses=errors_of(404, 409),
)
def delete_mask(
    aset: AnnotatorAnnotationSetDep, case: str, session: SessionDep, store: StoreDep
) -> Deleted:
    """Delete one case's mask from a set no audit has used (annotator), to upload a corrected
    one in its place with POST .../masks. Its stored file goes if nothing else uses it.
    """
    mask_id, blobs = removal.delete_mask(session, store, aset, case)
    return Deleted(deleted="mask", id=mask_id, blobs_removed=blobs)


@router.delete("/v1/audits/{audit_id}", responses=errors_of(404, 409))
def delete_audit(
    audit: AdminAuditDep, session: SessionDep, store: StoreDep, remembered: RememberedDep
) -> Deleted:
    """Delete a finished audit with its results and reviews (admin); cancel a running one first.
    Stored files nothing else uses are removed.
    """
    blobs = removal.delete_audit(session, store, audit)
    remembered.forget_audits()
    return Deleted(deleted="audit", id=audit.id, blobs_removed=blobs)
