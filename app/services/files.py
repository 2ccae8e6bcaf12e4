"""Rows of ``files`` whose blobs are published into the store in the same unit of work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.db.tables import StoredFile
from app.storage import Store, Written
from models.io import format_of

AddFile = Callable[[Written, str], StoredFile]


@contextmanager
def publishing(session: Session, store: Store) -> Iterator[AddFile]:
    """Yield ``add(written, name)``, which publishes a staged file and adds its row; commits.

    On any error the transaction is rolled back and the blobs this block created are removed
    again (unless another row, committed meanwhile, names the same content).
    """
    created: list[str] = []

    def add(written: Written, name: str) -> StoredFile:
        row = StoredFile(
            sha256=written.sha256,
            size_bytes=written.size,
            name=name,
            format=format_of(Path(name)) or "",
        )
        session.add(row)
        if store.publish(written):
            created.append(written.sha256)
        return row

    try:
        yield add
        session.commit()
    except BaseException:
        session.rollback()
        for sha in created:
            if not session.scalar(select(exists().where(StoredFile.sha256 == sha))):
                store.discard(sha)
        raise
