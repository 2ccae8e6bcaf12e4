"""The dependencies of every route, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app import errors
from app.db.enums import Role
from app.errors import Forbidden, Unauthorized
from app.queue import send_audit
from app.services import keys
from app.services.audits import Enqueue
from app.services.keys import Principal
from app.settings import Settings
from app.storage import Store

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


def get_principal(session: SessionDep, key: Annotated[str | None, Security(api_key)]) -> Principal:
    if not key:
        raise Unauthorized(errors.MISSING_KEY, "send an API key in the X-API-Key header")
    principal = keys.authenticate(session, key)
    if principal is None:
        raise Unauthorized(errors.INVALID_KEY, "the API key is not valid (unknown or revoked)")
    return principal


def require(role: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.may(role):
            raise Forbidden(
                errors.FORBIDDEN,
                f"this needs a key with role '{role.value}' or above; yours is "
                f"'{principal.role.value}'",
            )
        return principal

    return check


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Annotator = Annotated[Principal, Depends(require(Role.annotator))]
Reviewer = Annotated[Principal, Depends(require(Role.reviewer))]
Admin = Annotated[Principal, Depends(require(Role.admin))]

Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Offset = Annotated[int, Query(ge=0, description="items to skip")]
