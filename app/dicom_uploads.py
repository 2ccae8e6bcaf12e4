"""Receiving a DICOM upload (a PACS export: files or zips, nested any way) within the limits.

``imaging.dicom.source`` opens a zip inside a zip in memory. So every zip, at any depth, is
unpacked here first, each entry counted against the upload's file and byte limits as it is
written, and what reaches ``imaging.dicom`` is a folder of plain files. Each file gets a folder
of its own (PACS exports repeat names like ``IM00001`` in every series folder) and keeps the
name the client gave it (``export.zip:PAT1/SER3/IM00001``) for messages.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

from app.errors import TooLarge
from app.uploads import ZIP_ERRORS, ZIP_MAGIC, Limits, Receiver, is_skipped, nothing_received
from imaging.dicom.labels import identifiers_of, scrub
from imaging.errors import ErrorCode
from imaging.formats import format_of

DICM_AT = 128  # the "DICM" marker of a Part 10 file follows a 128-byte preamble
MAX_DEPTH = 4  # zips inside zips inside ...; deeper nesting is refused


@dataclass(frozen=True)
class DicomUpload:
    """Received DICOM files: under ``root`` (no zips left), with the names the client knows."""

    root: Path
    shown: dict[Path, str]  # staged file -> e.g. "export.zip:PAT1/SER3/IM00001"
    label: str  # the upload as a whole, e.g. "the upload" or "study 1.2.3"
    hidden: frozenset[str] = frozenset()  # patient identifiers its files hold (``scrubbed``)

    def name_of(self, path: Path) -> str:
        return self.shown.get(path, path.name)

    def scrubbed(self, headers: Iterable[Dataset]) -> DicomUpload:
        """The same upload, knowing the patient identifiers of ``headers``: the names its
        client gave (PACS exports name folders after the patient) and every message made by
        ``describe`` say ``<patient>`` instead.
        """
        hidden = self.hidden | identifiers_of(headers)
        shown = {path: scrub(name, hidden) for path, name in self.shown.items()}
        return DicomUpload(self.root, shown, scrub(self.label, hidden), hidden)

    def describe(self, text: str, folders: dict[Path, str] | None = None) -> str:
        """``text`` with staged paths (files, then ``folders`` and ``root``) named as the
        client knows them: no server path leaks into a response.
        """
        for path, shown in sorted(self.shown.items(), key=lambda item: -len(str(item[0]))):
            text = text.replace(str(path), shown)
        for folder, shown in {**(folders or {}), self.root: self.label}.items():
            text = text.replace(str(folder), shown)
        return scrub(text, self.hidden)

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
    the formats of ``imaging.formats`` are not opened: a zip of PNGs costs one directory read.
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


def receive_dicom(
    parts: Iterable[tuple[str | None, BinaryIO]], folder: Path, limits: Limits
) -> DicomUpload:
    """Copy an upload's files into ``folder/upload``, every zip unpacked, within ``limits``."""
    receiver = Receiver(folder / "upload", limits, by_content=True, max_depth=MAX_DEPTH, flat=False)
    shown: dict[Path, str] = {}
    for index, (raw_name, stream) in enumerate(parts):
        shown.update((item.path, item.shown) for item in receiver.part(index, raw_name, stream))
    if not shown:
        raise nothing_received()
    check_sizes(shown, limits)
    return DicomUpload(receiver.root, shown, "the upload")


SIZE_TAGS = ["Rows", "Columns", "NumberOfFrames", "SeriesInstanceUID", "Modality"]


def check_sizes(shown: dict[Path, str], limits: Limits) -> None:
    """Refuse, by the files' headers and before any pixel data is decoded, a frame of more
    than ``max_pixels`` pixels or a series of more than ``max_voxels`` voxels (413, naming
    the file). A SEG's frames (one per segment and slice) count as frames only: its volume
    is its series'. Files that are not DICOM or hold no image are left to the series checks.
    """
    series: dict[str, tuple[int, str]] = {}
    for path, name in shown.items():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=SIZE_TAGS)
            rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            frames = int(ds.get("NumberOfFrames") or 1)
        except Exception:  # not DICOM, or no readable sizes: the series checks say why
            continue
        if rows * columns > limits.max_pixels:
            raise _too_large(name, f"a frame of {rows} x {columns}", rows * columns, limits)
        if ds.get("Modality") == "SEG":
            continue
        uid = str(ds.get("SeriesInstanceUID") or name)
        voxels, first = series.get(uid, (0, name))
        voxels += rows * columns * frames
        if voxels > limits.max_voxels:
            raise _too_large(first, "its series", voxels, limits, voxels=True)
        series[uid] = (voxels, first)


def _too_large(
    name: str, what: str, count: int, limits: Limits, *, voxels: bool = False
) -> TooLarge:
    limit, unit = (limits.max_voxels, "voxels") if voxels else (limits.max_pixels, "pixels")
    return TooLarge(
        ErrorCode.IMAGE_TOO_LARGE,
        f"{name}: {what} holds {'at least ' if voxels else ''}{count} {unit}, more than the "
        f"limit of {limit} (SEGAUDIT_MAX_IMAGE_{unit.upper()}); downsample or crop it",
        file=name,
    )
