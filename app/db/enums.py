"""The closed sets of values stored in the database (kept as strings with CHECK constraints)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What an API key may do; each role may also do what the roles before it may."""

    viewer = "viewer"  # reads
    annotator = "annotator"  # uploads images and masks, starts audits
    reviewer = "reviewer"  # reviews results
    admin = "admin"  # manages the project's keys

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class AuditStatus(StrEnum):
    """queued -> running -> succeeded | failed | cancelled (queued may also fail or cancel)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (AuditStatus.succeeded, AuditStatus.failed, AuditStatus.cancelled)


class Decision(StrEnum):
    accept_cleansed = "accept_cleansed"
    keep_original = "keep_original"
    needs_rework = "needs_rework"


def one_of(column: str, values: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps ``column`` within ``values``."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
