"""Receiving a DICOM upload (a PACS export: files or zips, nested any way) within the limits.

``models.dicom.source`` opens a zip inside a zip in memory. So every zip, at any depth, is
unpacked here first, each entry counted against the upload's file and byte limits as it is
written, and what reaches ``models.dicom`` is a folder of plain files. Each file gets a folder
of its own (PACS exports repeat names like ``IM00001`` in every series folder) and keeps the
name the client gave it (``export.zip:PAT1/SER3/IM00001``) for messages.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app import errors
from app.errors import Invalid
from app.storage import LimitExceeded, copy_stream
from app.uploads import Budget, Limits, entry_name, is_skipped, safe_name
from models.io import format_of

ZIP_MAGIC = b"PK\x03\x04"
DICM_AT = 128  # the "DICM" marker of a Part 10 file follows a 128-byte preamble
MAX_DEPTH = 4  # zips inside zips inside ...; deeper nesting is refused
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError)


@dataclass(frozen=True)
class DicomUpload:
    """Received DICOM files: under ``root`` (no zips left), with the names the client knows."""

    root: Path
    shown: dict[Path, str]  # staged file -> e.g. "export.zip:PAT1/SER3/IM00001"
    label: str  # the upload as a whole, e.g. "the upload" or "study 1.2.3"

    def name_of(self, path: Path) -> str:
        return self.shown.get(path, path.name)

    def describe(self, text: str, folders: dict[Path, str] | None = None) -> str:
        """``text`` with staged paths (files, then ``folders`` and ``root``) named as the
        client knows them: no server path leaks into a response.
        """
        for path, shown in sorted(self.shown.items(), key=lambda item: -len(str(item[0]))):
            text = text.replace(str(path), shown)
        for folder, shown in {**(folders or {}), self.root: self.label}.items():
            text = text.replace(str(folder), shown)
        return text

    def file_in(self, text: str, name: str | None = None) -> str | None:
        """The received file that ``text`` names by its staged path, else the first one called
        ``name``; None when there is none.
        """
        for path, shown in self.shown.items():
            if str(path) in text:
                return shown
        return next((s for p, s in self.shown.items() if name and p.name == name), None)


def _peek(stream: BinaryIO) -> bytes:
    position = stream.tell()
    head = stream.read(DICM_AT + 4)
    stream.seek(position)
    return head


def _is_dicom(head: bytes) -> bool:
    return head[DICM_AT : DICM_AT + 4] == b"DICM"


def _named_dicom(name: str) -> bool:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.lower().endswith(".dcm") or base.upper() == "DICOMDIR"


def _zip_holds_dicom(stream: BinaryIO) -> bool:
    """Whether a zip holds a DICOM file (by name or marker) or another zip. Entries named as
    the formats of ``models.io`` are not opened: a zip of PNGs costs one directory read.
    """
    try:
        with zipfile.ZipFile(stream) as zf:  # a file object passed in stays open
            for entry in zf.infolist():
                if is_skipped(entry):
                    continue
                if _named_dicom(entry.filename):
                    return True
                if format_of(Path(entry.filename)) is not None:
                    continue
                with zf.open(entry) as f:
                    head = f.read(DICM_AT + 4)
                if _is_dicom(head) or head.startswith(ZIP_MAGIC):
                    return True
    except ZIP_ERRORS:
        return False  # the plain upload path refuses it as bad_zip, naming it
    finally:
        stream.seek(0)
    return False


def is_dicom_upload(parts: Iterable[tuple[str | None, BinaryIO]]) -> bool:
    """Whether an upload is DICOM: a ``.dcm`` file or a DICOMDIR, a file with the DICM marker,
    or a zip that holds one of those or a zip. Otherwise it is an upload of image files.
    """
    for name, stream in parts:
        head = _peek(stream)
        if _named_dicom(name or "") or _is_dicom(head):
            return True
        if head.startswith(ZIP_MAGIC) and _zip_holds_dicom(stream):
            return True
    return False


class _Receiver:
    """Writes files under ``root``, unpacking zips at any depth, within ``budget``."""

    def __init__(self, root: Path, budget: Budget) -> None:
        self.root = root
        self.budget = budget
        self.shown: dict[Path, str] = {}
        self.count = 0

    def file(self, stream: BinaryIO, name: str, shown: str, depth: int) -> None:
        """Write one file (already counted by ``budget.take_file``); unpack it if a zip."""
        self.count += 1
        dest = self.root / f"{self.count:06d}" / name
        dest.parent.mkdir()
        try:
            written = copy_stream(stream, dest, limit=self.budget.bytes_left())
        except LimitExceeded:
            raise self.budget.too_large(shown) from None
        self.budget.bytes += written.size
        with dest.open("rb") as f:
            is_zip = f.read(4) == ZIP_MAGIC
        if not is_zip:
            self.shown[dest] = shown
            return
        if depth >= MAX_DEPTH:
            raise Invalid(
                errors.BAD_ZIP,
                f"{shown}: zips nested more than {MAX_DEPTH} deep; unpack some levels first",
                file=shown,
            )
        self.unpack(dest, shown, depth + 1)
        # The inner zip itself is no file of the upload: only what it holds counts.
        dest.unlink()
        dest.parent.rmdir()
        self.budget.bytes -= written.size
        self.budget.files -= 1

    def unpack(self, archive: Path, shown: str, depth: int) -> None:
        """Write a zip's files, after checking its entry names, count and declared sizes."""
        try:
            with zipfile.ZipFile(archive) as zf:
                entries = [e for e in zf.infolist() if not is_skipped(e)]
                names = [entry_name(e, shown) for e in entries]
                self.budget.take_file(shown, len(entries))
                # Declared sizes can lie: they allow a quick refusal; written bytes are counted.
                if sum(e.file_size for e in entries) > self.budget.bytes_left():
                    raise self.budget.too_large(shown)
                for entry, name in zip(entries, names, strict=True):
                    with zf.open(entry) as stream:
                        self.file(stream, name, f"{shown}:{entry.filename}", depth)
        except ZIP_ERRORS as exc:
            raise Invalid(
                errors.BAD_ZIP, f"{shown}: not a readable zip archive ({exc})", file=shown
            ) from None


def receive_dicom(
    parts: Iterable[tuple[str | None, BinaryIO]], folder: Path, limits: Limits
) -> DicomUpload:
    """Copy an upload's files into ``folder/upload``, every zip unpacked, within ``limits``."""
    root = folder / "upload"
    root.mkdir()
    receiver = _Receiver(root, Budget(limits))
    for index, (raw_name, stream) in enumerate(parts):
        name = safe_name(raw_name or "")
        if _peek(stream).startswith(ZIP_MAGIC):  # like the image path: the zip itself is free
            archive = copy_stream(stream, folder / f"upload-{index}.zip")
            receiver.unpack(archive.path, name, depth=1)
            archive.path.unlink()
        else:
            receiver.budget.take_file(name)
            receiver.file(stream, name, name, depth=0)
    if not receiver.shown:
        raise Invalid(errors.EMPTY_UPLOAD, "the upload holds no files; send them as 'files'")
    return DicomUpload(root, receiver.shown, "the upload")
