"""API keys of the caller's project (admin only; the first key comes from the command line)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Admin, RememberedDep, SessionDep
from app.api.docs import errors_of
from app.api.params import DbId
from app.db.tables import Project
from app.schemas import KeyCreate, KeyCreated, KeyOut
from app.services import keys

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get("", responses=errors_of())
def list_keys(session: SessionDep, principal: Admin) -> list[KeyOut]:
    """List the project's API keys (never the keys themselves)."""
    return [KeyOut.of(k) for k in keys.list_keys(session, principal.project_id)]


@router.post("", status_code=201, responses=errors_of(422))
def create_key(body: KeyCreate, session: SessionDep, principal: Admin) -> KeyCreated:
    """Create a key in the project; the response holds the key, shown this once."""
    project = session.get_one(Project, principal.project_id)
    key, secret = keys.create_key(session, project, body.role, body.name)
    return KeyCreated(**KeyOut.of(key).model_dump(), key=secret)


@router.post("/{key_id}/revoke", responses=errors_of(404))
def revoke_key(
    key_id: DbId, session: SessionDep, principal: Admin, remembered: RememberedDep
) -> KeyOut:
    """Revoke a key: it stops working at once in this server process, and in the others within
    `SEGAUDIT_ACCESS_CACHE_S` (5 s by default). Revoking twice is harmless."""
    revoked = keys.revoke_key(session, principal.project_id, key_id)
    remembered.forget_key(revoked.id)
    return KeyOut.of(revoked)
