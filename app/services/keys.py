"""Projects and their API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.enums import Role
from app.db.tables import ApiKey, Project
from app.errors import NotFound
from app.services.kept import Kept
from imaging.errors import ErrorCode

KEY_PREFIX = "sa_"


PATIENT_LABELS_ROLE = Role.reviewer  # the least role that sees a DICOM case's patient labels


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, project, role and name."""

    key_id: int
    project_id: int
    role: Role
    name: str

    def may(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    @property
    def sees_patient_labels(self) -> bool:
        """Whether a DICOM case's patient-facing labels (``Case.dicom_labels``) are shown: to
        reviewers, who match a flagged case to the patient's images in their PACS, and admins;
        annotators and viewers work on the pseudonymous names alone.
        """
        return self.may(PATIENT_LABELS_ROLE)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def get_or_create_project(session: Session, name: str) -> Project:
    """The project called ``name``, created if new (flushes)."""
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(name=name)
        session.add(project)
        session.flush()
    return project


def create_key(
    session: Session, project: Project, role: Role, name: str = ""
) -> tuple[ApiKey, str]:
    """Make a key for ``project``; returns the row and the secret (never stored). Commits."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        project_id=project.id,
        role=Role(role),
        name=name or f"{Role(role).value}-key",
        prefix=secret[:10],
        key_hash=hash_key(secret),
    )
    session.add(key)
    session.commit()
    return key, secret


KEYS_KEPT = 10_000  # principals a server process remembers (``principal_memory``)


def principal_memory(ttl: float) -> Kept[str, Principal]:
    """Where a server process remembers valid keys' principals, by the key's hash, for ``ttl``
    seconds (0: never)."""
    return Kept(KEYS_KEPT, ttl=ttl)


def authenticate(
    session: Session, secret: str, kept: Kept[str, Principal] | None = None
) -> Principal | None:
    """The principal of a valid, unrevoked key, else None; one that ``kept`` remembers is not
    looked up again, and one looked up is remembered there."""
    digest = hash_key(secret)
    if kept is not None and (known := kept.get(digest)) is not None:
        return known
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    )
    if key is None:
        return None
    principal = Principal(key.id, key.project_id, Role(key.role), key.name)
    if kept is not None:
        kept.put(digest, principal)
    return principal


def remembered_principal(kept: Kept[str, Principal], secret: str) -> Principal | None:
    """The principal ``kept`` remembers for ``secret``, without asking the database."""
    return kept.get(hash_key(secret))


def list_keys(session: Session, project_id: int) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.project_id == project_id).order_by(ApiKey.id))
    )


def revoke_key(session: Session, project_id: int, key_id: int) -> ApiKey:
    """Revoke one of the project's keys (idempotent). Commits."""
    key = session.get(ApiKey, key_id)
    if key is None or key.project_id != project_id:
        raise NotFound(ErrorCode.NOT_FOUND, f"no API key {key_id} in this project")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key
