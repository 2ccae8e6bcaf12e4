"""Collecting what a crash leaves in the store: stale staging and blobs that no row names.

A process killed during an upload leaves its staging folder under ``<storage>/tmp`` and, when
it died while publishing, blobs whose ``files`` rows were never committed. ``Store.sweep_staging``
removes the staging; ``collect_orphans`` removes each blob that no ``files`` row names.

Blobs being published right now are not orphans yet: a request publishes its blobs first and
commits their rows afterwards. ``Store.publish`` sets a blob's mtime to the moment it is
published (also when the blob was there already), and only blobs older than ``min_age_s``
(``orphan_blob_min_age_s``, longer than any upload takes from its first publish to its commit)
are collected. A blob that a concurrent request re-publishes in the instant between the check
and the removal can still be lost, so 0 is only for a store that nothing else is using.

Run by ``segaudit storage gc`` (``--dry-run`` lists) and at the API's start-up (``app.main``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.tables import StoredFile
from app.settings import Settings
from app.storage import Store

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class Orphan:
    """A blob that no ``files`` row names: where it is and its size."""

    path: Path
    size: int


def find_orphans(session: Session, store: Store, min_age_s: float) -> list[Orphan]:
    """The blobs older than ``min_age_s`` seconds that no ``files`` row names."""
    cutoff = time.time() - min_age_s
    candidates: list[Orphan] = []
    for path in store.blob_paths():
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if info.st_mtime <= cutoff:
            candidates.append(Orphan(path, info.st_size))
    orphans: list[Orphan] = []
    for start in range(0, len(candidates), BATCH):
        batch = candidates[start : start + BATCH]
        named = set(
            session.scalars(
                select(StoredFile.sha256).where(StoredFile.sha256.in_([o.path.name for o in batch]))
            )
        )
        orphans.extend(o for o in batch if o.path.name not in named)
    return orphans


def collect_orphans(
    session: Session, store: Store, min_age_s: float, *, dry_run: bool = False
) -> list[Orphan]:
    """Remove (unless ``dry_run``) the orphan blobs ``find_orphans`` finds; returns them."""
    orphans = find_orphans(session, store, min_age_s)
    if not dry_run:
        for orphan in orphans:
            # Prefix folders stay: removing one could race a publish into it.
            orphan.path.unlink(missing_ok=True)
    return orphans


def at_start_up(sessions: sessionmaker[Session], store: Store, settings: Settings) -> None:
    """The API's start-up sweep: stale staging, then orphan blobs. A database that cannot be
    read yet (not migrated, unreachable) skips the blobs with a warning: start-up goes on.
    """
    swept = store.sweep_staging(settings.staging_max_age_s)
    if swept:
        log.warning("start-up: removed %d stale staging entries", len(swept))
    try:
        with sessions() as session:
            orphans = collect_orphans(session, store, settings.orphan_blob_min_age_s)
    except SQLAlchemyError as exc:
        log.warning("start-up: orphan blobs not collected: %s", type(exc).__name__)
        return
    if orphans:
        log.warning(
            "start-up: removed %d orphan blobs (%d bytes)",
            len(orphans),
            sum(o.size for o in orphans),
        )
