"""Rows of ``files`` whose blobs are published into the store in the same unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db.tables import StoredFile
from app.storage import Store, Written
from imaging.dicom.rtstruct import RTSTRUCT_CLASS
from imaging.dicom.seg import SEG_CLASSES
from imaging.formats import format_of
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG


class AddFile(Protocol):
    """``publishing``'s ``add(written, name, fmt=None)``."""

    def __call__(self, written: Written, name: str, fmt: str | None = None) -> StoredFile: ...


def file_format(path: Path, name: str) -> str:
    """The format of a file named ``name``: by its extension; a ``.dcm`` by its SOP class
    (``dicom-seg``, ``dicom-rtstruct``, else ``dicom``); "" when unknown.
    """
    if not name.lower().endswith(".dcm"):
        return format_of(Path(name)) or ""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError):
        return "dicom"
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class in SEG_CLASSES:
        return DICOM_SEG
    return DICOM_RTSTRUCT if sop_class == RTSTRUCT_CLASS else "dicom"


@contextmanager
def publishing(session: Session, store: Store) -> Iterator[AddFile]:
    """Yield ``add(written, name, fmt=None)``, which publishes a staged file and adds its row
    (``fmt`` defaults to ``file_format``); commits.

    On any error the transaction is rolled back and the blobs this block created are removed
    again (unless another row, committed meanwhile, names the same content). When the database
    cannot say (it is the error: unreachable), they stay for ``segaudit storage gc``, and the
    original error is raised.
    """
    created: list[str] = []

    def add(written: Written, name: str, fmt: str | None = None) -> StoredFile:
        row = StoredFile(
            sha256=written.sha256,
            size_bytes=written.size,
            name=name,
            format=fmt if fmt is not None else file_format(written.path, name),
        )
        session.add(row)
        if store.publish(written):
            created.append(written.sha256)
        return row

    try:
        yield add
        session.commit()
    except BaseException:
        _discard_unnamed(session, store, created)
        raise


def _discard_unnamed(session: Session, store: Store, created: list[str]) -> None:
    """Roll back, then remove the blobs in ``created`` that no committed row names."""
    try:
        session.rollback()
        unnamed = [
            sha
            for sha in created
            if not session.scalar(select(exists().where(StoredFile.sha256 == sha)))
        ]
    except SQLAlchemyError:  # the database is gone: its rows cannot say; gc will
        return
    for sha in unnamed:
        store.discard(sha)
