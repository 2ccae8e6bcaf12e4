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


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else None."""
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    )
    if key is None:
        return None
    return Principal(key.id, key.project_id, Role(key.role), key.name)


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
