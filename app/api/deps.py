"""The dependencies of every route, as ``Annotated`` aliases.

No ``from __future__ import annotations`` here: FastAPI reads a dependency's annotations from
its module's globals, so the lookups made per role below (``dataset_dep(role)``), whose
annotations name their closure's ``role``, need theirs evaluated when they are defined.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.api.params import DbId
from app.api.params import Limit as Limit  # re-exported: pagination for the routes
from app.api.params import Offset as Offset
from app.db.enums import Role
from app.db.tables import AnnotationSet, Audit, Dataset
from app.errors import Forbidden, Unauthorized
from app.queue import send_audit
from app.services import annotations, audits, datasets, keys, listing
from app.services.audits import Enqueue
from app.services.kept import Kept
from app.services.keys import Principal
from app.settings import Settings
from app.storage import Store
from imaging.errors import ErrorCode

api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="a key made by `segaudit keys create --project NAME --role ROLE`",
)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]


def get_enqueue(request: Request, settings: SettingsDep) -> Enqueue:
    client = request.app.state.celery
    return lambda audit_id: send_audit(client, audit_id, queue=settings.audit_queue)


EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]


@dataclass(frozen=True)
class Remembered:
    """What a server process remembers between requests, each for ``Settings.access_cache_s``
    at most: valid keys' principals, and settled audits by project (for the case listing). A
    key revoked, or an audit deleted, through this process is forgotten at once; the other
    processes honour it until their memory of it expires.
    """

    principals: Kept[str, Principal]
    audits: Kept[tuple[int, int], listing.SettledAudit]

    @classmethod
    def new(cls, ttl: float) -> "Remembered":
        return cls(keys.principal_memory(ttl), listing.audit_memory(ttl))

    def forget_key(self, key_id: int) -> None:
        self.principals.drop_where(lambda _, p: p.key_id == key_id)

    def forget_audits(self) -> None:
        self.audits.clear()


async def get_remembered(request: Request) -> Remembered:  # async: no trip to the thread pool
    remembered: Remembered = request.app.state.remembered
    return remembered


RememberedDep = Annotated[Remembered, Depends(get_remembered)]


def principal_of(session: Session, key: str | None, remembered: Remembered) -> Principal:
    """The caller of ``key`` (401 for none, or one unknown or revoked)."""
    if not key:
        raise Unauthorized(ErrorCode.MISSING_KEY, "send an API key in the X-API-Key header")
    principal = keys.authenticate(session, key, remembered.principals)
    if principal is None:
        raise Unauthorized(ErrorCode.INVALID_KEY, "the API key is not valid (unknown or revoked)")
    return principal


def get_principal(
    session: SessionDep,
    key: Annotated[str | None, Security(api_key)],
    remembered: RememberedDep,
) -> Principal:
    return principal_of(session, key, remembered)


@cache
def require(role: Role) -> Callable[[Principal], Principal]:
    """The dependency that authenticates the caller and checks the key's ``role``.

    One per role (cached): FastAPI then runs it once per request, however many of a route's
    dependencies (its principal, the resource it looks up) ask for it.
    """

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.may(role):
            raise Forbidden(
                ErrorCode.FORBIDDEN,
                f"this needs a key with role '{role.value}' or above; yours is "
                f"'{principal.role.value}'",
            )
        return principal

    return check


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Annotator = Annotated[Principal, Depends(require(Role.annotator))]
Reviewer = Annotated[Principal, Depends(require(Role.reviewer))]
Admin = Annotated[Principal, Depends(require(Role.admin))]

# The resource a route's path names, looked up in the caller's project (404 when it is not
# there). Each authenticates with its role first, so a missing key is still a 401 and a weak
# role a 403, whatever exists: a dependency's own dependencies are solved before it is called.


@cache
def dataset_dep(role: Role) -> Callable[[int, Session, Principal], Dataset]:
    """The path's ``dataset_id``, for a key with ``role`` or above."""

    def dataset(
        dataset_id: DbId,
        session: SessionDep,
        principal: Annotated[Principal, Depends(require(role))],
    ) -> Dataset:
        return datasets.get_dataset(session, principal.project_id, dataset_id)

    return dataset


@cache
def annotation_set_dep(role: Role) -> Callable[[int, int, Session, Principal], AnnotationSet]:
    """The path's ``set_id`` in its ``dataset_id``, for a key with ``role`` or above."""

    def annotation_set(
        dataset_id: DbId,
        set_id: DbId,
        session: SessionDep,
        principal: Annotated[Principal, Depends(require(role))],
    ) -> AnnotationSet:
        dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
        return annotations.get_annotation_set(session, dataset, set_id)

    return annotation_set


@cache
def audit_dep(role: Role) -> Callable[[int, Session, Principal], Audit]:
    """The path's ``audit_id``, for a key with ``role`` or above."""

    def audit(
        audit_id: DbId,
        session: SessionDep,
        principal: Annotated[Principal, Depends(require(role))],
    ) -> Audit:
        return audits.get_audit(session, principal.project_id, audit_id)

    return audit


# For any key (reads); the ones named after a role, for routes that need that role or above.
DatasetDep = Annotated[Dataset, Depends(dataset_dep(Role.viewer))]
AnnotationSetDep = Annotated[AnnotationSet, Depends(annotation_set_dep(Role.viewer))]
AuditDep = Annotated[Audit, Depends(audit_dep(Role.viewer))]
AnnotatorDatasetDep = Annotated[Dataset, Depends(dataset_dep(Role.annotator))]
AnnotatorAnnotationSetDep = Annotated[AnnotationSet, Depends(annotation_set_dep(Role.annotator))]
AnnotatorAuditDep = Annotated[Audit, Depends(audit_dep(Role.annotator))]
ReviewerAuditDep = Annotated[Audit, Depends(audit_dep(Role.reviewer))]
