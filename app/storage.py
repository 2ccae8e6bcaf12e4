"""Content-addressed file storage: ``<root>/blobs/<sha[:2]>/<sha256>``, written atomically.

Every file is first written under ``<root>/tmp`` (same file system), hashed as it is written,
flushed, and then renamed into place, so a blob is either complete or absent. Blobs are shared
by content: the database rows that name a file (``files``) carry its name, size and checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Written:
    """A file written to a staging folder: where, its SHA-256 and its size."""

    path: Path
    sha256: str
    size: int


class Store:
    """The storage folder: ``blobs/`` by content, ``tmp/`` for staging (same file system)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"

    def path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def new_folder(self) -> Path:
        """A new private folder under ``tmp``; the caller removes it."""
        folder = self.tmp / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A private folder under ``tmp`` for one request's files, removed afterwards."""
        folder = self.new_folder()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, written: Written) -> bool:
        """Move a staged file into the store; True when this call created the blob."""
        target = self.path(written.sha256)
        if target.exists():
            written.path.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written.path, target)
        return True

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class LimitExceeded(Exception):
    """More bytes than allowed were written (``copy_stream``'s ``limit``)."""


def copy_stream(stream: IO[bytes], dest: Path, *, limit: int | None = None) -> Written:
    """Copy ``stream`` to ``dest`` in chunks while hashing it; never holds the whole file.

    Raises ``LimitExceeded`` (leaving a partial ``dest`` for the caller's staging folder to
    remove) as soon as more than ``limit`` bytes arrive.
    """
    digest = hashlib.sha256()
    size = 0
    with dest.open("xb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise LimitExceeded(dest.name)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Written(dest, digest.hexdigest(), size)
