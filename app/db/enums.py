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


class LabelTag(StrEnum):
    """What an annotation set's masks are, in MONAI Label's words (its datastore's label tags)."""

    original = "original"  # as uploaded by annotators
    cleansed = "cleansed"  # an audit's cleansed masks (downloaded from the audit, never a set)
    final = "final"  # resolved from an audit's decisions (POST /v1/audits/{id}/resolve)


class MaskSource(StrEnum):
    """Where a resolved set took a case's mask from."""

    original = "original"  # the audited set's mask
    cleansed = "cleansed"  # the audit's cleansed mask
    corrected = "corrected"  # a corrected mask uploaded for the case
    excluded = "excluded"  # no mask: the case is left out of the resolved set


class Undecided(StrEnum):
    """What a resolve does with a case that no decision settles (none, or needs_rework)."""

    keep_original = "keep_original"
    accept_flagged = "accept_flagged"  # flagged cases take the cleansed mask, others the original
    exclude = "exclude"


def one_of(column: str, values: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps ``column`` within ``values``."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
