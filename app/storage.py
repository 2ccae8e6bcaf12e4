"""Content-addressed file storage: ``<root>/blobs/<sha[:2]>/<sha256>``, written atomically.

Every file is first written under ``<root>/tmp`` (same file system), hashed as it is written,
flushed, and then renamed into place, so a blob is either complete or absent. Blobs are shared
by content: the database rows that name a file (``files``) carry its name, size and checksum.

Nothing is left behind by a crash: a process killed mid-request leaves its folder under ``tmp``,
which ``sweep_staging`` removes once nothing in it has changed for ``staging_max_age_s``. The API
sweeps at start-up (``app.main``) and then on its own schedule, with no scheduler of its own:
``new_folder`` (every upload and every job's staging) sweeps first when the last sweep is more
than ``SWEEP_EVERY_S`` old. The age is what keeps a sweep off the live folders of concurrent
requests and of other processes (several API processes, workers); 0 sweeps everything and is
only for a store nothing else uses (tests). Blobs that no ``files`` row names are collected by
``app.services.sweep`` (``segaudit storage gc``, and at start-up).

A full disk (``ENOSPC``, or a quota's ``EDQUOT``) while a file is staged or published raises
``InsufficientStorage`` (``storage_full``, HTTP 507): the staging folder goes with its request
and ``app.services.files.publishing`` removes the blobs its unit of work created, so nothing
half-written stays, and the same request succeeds once space is freed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.errors import InsufficientStorage
from imaging.errors import ErrorCode

CHUNK = 1024 * 1024
SWEEP_EVERY_S = 600.0  # new_folder sweeps stale staging at most this often
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says a file system (or a quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def storage_full(what: str, *, file: str | None = None) -> InsufficientStorage:
    """The one refusal for a full storage folder, naming what could not be written."""
    return InsufficientStorage(
        ErrorCode.STORAGE_FULL,
        f"the storage has no space left to write {what}; nothing of it was kept. Free space "
        "in the storage folder (or enlarge its volume), then try again",
        file=file,
    )


@contextmanager
def _space_for(what: str) -> Iterator[None]:
    """Turn a full disk met inside the block into ``storage_full(what)``."""
    try:
        yield
    except OSError as exc:
        if is_no_space(exc):
            raise storage_full(what) from exc
        raise


@dataclass(frozen=True)
class Written:
    """A file written to a staging folder: where, its SHA-256 and its size."""

    path: Path
    sha256: str
    size: int


class Store:
    """The storage folder: ``blobs/`` by content, ``tmp/`` for staging (same file system)."""

    def __init__(self, root: Path, *, staging_max_age_s: float | None = None) -> None:
        """``staging_max_age_s``: sweep staging older than this from ``new_folder``, at most
        every ``SWEEP_EVERY_S`` (None: never; the API passes its setting).
        """
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.staging_max_age_s = staging_max_age_s
        self._swept_at: float | None = None
        self._sweep_lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def is_full(self) -> bool:
        """Whether less than one ``CHUNK`` is free on the store's file system: what an error
        without an errno (numpy's short write) means when it is met there.
        """
        return shutil.disk_usage(self.root).free < CHUNK

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def new_folder(self) -> Path:
        """A new private folder under ``tmp``; the caller removes it."""
        self._maybe_sweep()
        folder = self.tmp / uuid.uuid4().hex
        with _space_for("a staging folder"):
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

    def _maybe_sweep(self) -> None:
        if self.staging_max_age_s is None:
            return
        with self._sweep_lock:
            now = time.monotonic()
            if self._swept_at is not None and now - self._swept_at < SWEEP_EVERY_S:
                return
            self._swept_at = now
        self.sweep_staging(self.staging_max_age_s)

    def sweep_staging(self, max_age_s: float, *, dry_run: bool = False) -> list[Path]:
        """Remove (unless ``dry_run``) each entry of ``tmp`` in which nothing changed for
        ``max_age_s`` seconds (a folder's age is that of the newest file or folder in it);
        returns what was (or would be) removed.
        """
        removed: list[Path] = []
        if not self.tmp.is_dir():
            return removed
        cutoff = time.time() - max_age_s
        for entry in sorted(self.tmp.iterdir()):
            try:
                if _newest_mtime(entry) > cutoff:
                    continue
                if dry_run:
                    pass
                elif entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile by its own request
            removed.append(entry)
        return removed

    def blob_paths(self) -> Iterator[Path]:
        """Every blob in the store (files named by a SHA-256 under ``blobs/<sha[:2]>/``)."""
        if not self.blobs.is_dir():
            return
        for prefix in sorted(self.blobs.iterdir()):
            if prefix.is_dir():
                yield from sorted(p for p in prefix.iterdir() if p.is_file())

    def publish(self, written: Written) -> bool:
        """Move a staged file into the store; True when this call created the blob.

        The blob's mtime is set to now, also when it was there already, so that a blob being
        published (its ``files`` row not yet committed) looks new to ``segaudit storage gc``,
        which collects only blobs older than ``orphan_blob_min_age_s``.
        """
        target = self.path(written.sha256)
        try:
            os.utime(target)  # there already: now it looks new
        except FileNotFoundError:
            pass
        else:
            written.path.unlink(missing_ok=True)
            return False
        with _space_for(written.path.name):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(written.path, target)
        os.utime(target)
        return True

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def _newest_mtime(entry: Path) -> float:
    newest = entry.lstat().st_mtime
    if entry.is_dir() and not entry.is_symlink():
        for folder, dirs, files in os.walk(entry):
            for name in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest


class LimitExceeded(Exception):
    """More bytes than allowed were written (``copy_stream``'s ``limit``)."""


def copy_stream(stream: IO[bytes], dest: Path, *, limit: int | None = None) -> Written:
    """Copy ``stream`` to ``dest`` in chunks while hashing it; never holds the whole file.

    Raises ``LimitExceeded`` as soon as more than ``limit`` bytes arrive, and
    ``InsufficientStorage`` when the disk is full; either way a partial ``dest`` is left for
    the caller's staging folder to remove.
    """
    digest = hashlib.sha256()
    size = 0
    with _space_for(dest.name), dest.open("xb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise LimitExceeded(dest.name)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Written(dest, digest.hexdigest(), size)
