"""Finding DICOM files in a folder or zip archive, nested any way, by their content.

PACS exports name files anything (``IM000123``, ``1.2.840....dcm``) and nest them in patient,
study and series folders, sometimes zipped, sometimes with a DICOMDIR. None of that is trusted:
every file is recognised by its content (the ``DICM`` marker of a Part 10 file, or a zip
signature) and later grouped by its UIDs alone. A DICOMDIR is an index of the same files, so it
is skipped like any other non-image object.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from imaging.errors import ErrorCode, InputError
from imaging.formats import format_of

_PREAMBLE = 128
_DICM = b"DICM"
_ZIP = b"PK\x03\x04"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR
MANUFACTURER = "segaudit"  # the Manufacturer of every object segaudit writes


@dataclass(frozen=True)
class Source:
    """Where one DICOM file lies: a path, or a member of a zip archive (zips may nest)."""

    path: Path
    members: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join([str(self.path), *self.members])

    @property
    def name(self) -> str:
        return self.members[-1].rsplit("/", 1)[-1] if self.members else self.path.name

    def read_bytes(self) -> bytes:
        if not self.members:
            return self.path.read_bytes()
        stat = self.path.stat()
        data = _archive(str(self.path), stat.st_size, stat.st_mtime_ns).read(self.members[0])
        for member in self.members[1:]:  # a zip inside the zip: small, read in memory
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(member)
        return data

    def dataset(self, *, pixels: bool, case: str | None = None) -> Dataset:
        """The parsed file; raises ``InputError`` (unreadable_file) when it cannot be parsed."""
        try:
            stream = io.BytesIO(self.read_bytes()) if self.members else self.path
            return pydicom.dcmread(stream, stop_before_pixels=not pixels)
        except Exception as exc:  # any parser failure is the same user-facing problem
            raise InputError(
                ErrorCode.UNREADABLE, f"cannot read DICOM file {self}: {exc}", case=case
            ) from exc


@functools.lru_cache(maxsize=2)
def _archive(path: str, size: int, mtime_ns: int) -> zipfile.ZipFile:  # noqa: ARG001 (cache key)
    """An open zip, kept: reading thousands of members must not re-read its directory each time."""
    return zipfile.ZipFile(path)


@dataclass(frozen=True)
class DicomObject:
    """One DICOM instance found in a scan: where it is and its header (no pixel data)."""

    source: Source
    header: Dataset

    @property
    def sop_class(self) -> str:
        meta = getattr(self.header, "file_meta", None) or {}
        return str(self.header.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID", ""))

    @property
    def sop_instance_uid(self) -> str:
        meta = getattr(self.header, "file_meta", None) or {}
        uid = self.header.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", "")
        return str(uid)

    @property
    def modality(self) -> str:
        return str(self.header.get("Modality", "") or "?")

    @property
    def made_by_segaudit(self) -> bool:
        """Written by segaudit (a pseudo label or cleansed mask pushed back to a PACS)."""
        return str(self.header.get("Manufacturer", "")) == MANUFACTURER


@dataclass
class Scan:
    """Every DICOM object under a root, and notes on what was left out and why."""

    root: Path
    objects: list[DicomObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _walk(root: Path) -> Iterator[tuple[Source, bytes]]:
    """Yield (source, first bytes) for every file under ``root``, opening zips on the way."""
    if root.is_file():
        paths = [root]
    else:
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in paths:
        with path.open("rb") as f:
            head = f.read(_PREAMBLE + 4)
        if head.startswith(_ZIP):
            yield from _walk_zip(Source(path), path)
        else:
            yield Source(path), head


def _walk_zip(source: Source, data: Path | bytes) -> Iterator[tuple[Source, bytes]]:
    try:
        archive = zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(ErrorCode.UNREADABLE, f"cannot open zip archive {source}: {exc}") from exc
    with archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or base.startswith(".") or info.filename.startswith("__MACOSX/"):
                continue
            member = Source(source.path, (*source.members, info.filename))
            with archive.open(info) as f:
                head = f.read(_PREAMBLE + 4)
            if head.startswith(_ZIP):
                yield from _walk_zip(member, archive.read(info))
            else:
                yield member, head


def is_dicom_input(path: Path) -> bool:
    """Whether ``path`` is a zip, or a folder whose files (at any depth) include a DICOM file.

    A folder with image or mask files of ``imaging.formats`` at its top is not DICOM input.
    """
    path = Path(path)
    if path.is_file():
        with path.open("rb") as f:
            return f.read(4) == _ZIP
    if not path.is_dir():
        return False
    if any(p.is_file() and format_of(p) is not None for p in path.iterdir()):
        return False
    for candidate in sorted(path.rglob("*")):
        if not candidate.is_file() or candidate.name.startswith("."):
            continue
        with candidate.open("rb") as f:
            head = f.read(_PREAMBLE + 4)
        if head.startswith(_ZIP) or head[_PREAMBLE:] == _DICM:
            return True
    return False


def scan(root: Path) -> Scan:
    """Read the header of every DICOM file under ``root`` (a folder or a zip).

    Files that are not DICOM, DICOMDIR indexes and repeated copies of one instance are left out
    and counted in ``notes``; a file that looks like DICOM but cannot be parsed raises.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(ErrorCode.NOT_A_FOLDER, f"{root} does not exist")
    result = Scan(root)
    others: list[str] = []
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    for source, head in _walk(root):
        if head[_PREAMBLE:] != _DICM:
            others.append(source.name)
            continue
        header = source.dataset(pixels=False)
        obj = DicomObject(source, header)
        if obj.sop_class == MEDIA_STORAGE_DIRECTORY:
            skipped["DICOMDIR index"] += 1
            continue
        if not obj.sop_instance_uid:
            raise InputError(
                ErrorCode.UNREADABLE,
                f"DICOM file {source} has no SOP Instance UID",
            )
        if obj.sop_instance_uid in seen:
            skipped["repeated copy of an instance"] += 1
            continue
        seen.add(obj.sop_instance_uid)
        result.objects.append(obj)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        result.notes.append(
            f"{root.name}: skipped {len(others)} files that are not DICOM ({shown})"
        )
    for what, count in sorted(skipped.items()):
        result.notes.append(f"{root.name}: skipped {count} {what}")
    return result
