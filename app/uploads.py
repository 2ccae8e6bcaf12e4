"""Receiving uploaded files (plain or in zip archives) into a staging folder, within limits.

Nothing is read into memory whole: each file is copied in chunks and hashed on the way. Every
refusal names the file at fault; the caller's staging folder is removed either way, so a
refused upload leaves nothing behind.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app import errors
from app.errors import Invalid, TooLarge
from app.storage import LimitExceeded, Written, copy_stream
from models import errors as input_errors
from models.io import FORMATS, format_of, split_name

SUPPORTED = ", ".join(sorted(set(FORMATS)))


@dataclass(frozen=True)
class Limits:
    max_files: int  # files per upload, zip entries included
    max_bytes: int  # bytes per upload once unpacked


@dataclass(frozen=True)
class Incoming:
    """One received file: its name (``case7.nii.gz``), case name (``case7``) and staged copy."""

    name: str
    case: str
    written: Written


class Budget:
    """What is left of the upload's file count and unpacked bytes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def take_file(self, name: str, count: int = 1) -> None:
        self.files += count
        if self.files > self.limits.max_files:
            raise TooLarge(
                errors.TOO_MANY_FILES,
                f"{name}: the upload holds more than {self.limits.max_files} files; "
                "split it into several uploads",
                file=name,
            )

    def bytes_left(self) -> int:
        return self.limits.max_bytes - self.bytes

    def too_large(self, name: str) -> TooLarge:
        return TooLarge(
            errors.UPLOAD_TOO_LARGE,
            f"{name}: the upload expands to more than {self.limits.max_bytes} bytes; "
            "split it into several uploads",
            file=name,
        )


def receive(
    parts: Iterable[tuple[str | None, BinaryIO]], folder: Path, limits: Limits
) -> list[Incoming]:
    """Copy uploaded ``(file name, stream)`` parts into ``folder``; zips are unpacked there."""
    files = folder / "files"
    files.mkdir()
    budget = Budget(limits)
    received: dict[str, Incoming] = {}
    for index, (raw_name, stream) in enumerate(parts):
        name = safe_name(raw_name or "")
        if name.lower().endswith(".zip"):
            archive = copy_stream(stream, folder / f"upload-{index}.zip")
            for entry_name, incoming in _unpack(archive.path, name, files, budget):
                _add(received, incoming, entry_name)
        else:
            _check_format(name, name)
            budget.take_file(name)
            _add(received, _copy(stream, name, name, files, budget), name)
    if not received:
        raise Invalid(errors.EMPTY_UPLOAD, "the upload holds no files; send them as 'files'")
    return list(received.values())


def safe_name(raw: str, *, shown: str | None = None) -> str:
    """The file name of an upload or zip entry; refuses names that climb out of the folder."""
    shown = shown or raw
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", raw):
        raise Invalid(
            errors.UNSAFE_PATH,
            f"{shown}: the path leads outside the upload folder; name files without '..' or a "
            "leading '/'",
            file=shown,
        )
    if not path.name or path.name in (".", ".."):
        raise Invalid(errors.UNSAFE_PATH, f"'{shown}' is not a file name", file=shown)
    return path.name


def _check_format(name: str, shown: str) -> None:
    if format_of(Path(name)) is None:
        raise Invalid(
            input_errors.UNSUPPORTED_FORMAT,
            f"{shown}: unsupported file type '{split_name(Path(name))[1]}' "
            f"(supported: {SUPPORTED}, or one .zip of them)",
            file=shown,
        )


def _add(received: dict[str, Incoming], incoming: Incoming, shown: str) -> None:
    earlier = received.get(incoming.case)
    if earlier is not None:
        raise Invalid(
            input_errors.DUPLICATE_CASE,
            f"{shown}: the upload holds two files for case '{incoming.case}' "
            f"({earlier.name} and {incoming.name})",
            file=shown,
        )
    received[incoming.case] = incoming


def _copy(stream: BinaryIO, name: str, shown: str, files: Path, budget: Budget) -> Incoming:
    dest = files / name
    if dest.exists():  # same name twice (e.g. in two folders of a zip)
        raise Invalid(
            input_errors.DUPLICATE_CASE, f"{shown}: the upload holds {name} twice", file=shown
        )
    try:
        written = copy_stream(stream, dest, limit=budget.bytes_left())
    except LimitExceeded:
        raise budget.too_large(shown) from None
    budget.bytes += written.size
    return Incoming(name, split_name(Path(name))[0], written)


def _unpack(
    archive: Path, zip_name: str, files: Path, budget: Budget
) -> list[tuple[str, Incoming]]:
    """Unpack a zip's files (folders flattened), checking every entry before writing any."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = [e for e in zf.infolist() if not is_skipped(e)]
            names = [_check_entry(e, zip_name) for e in entries]
            budget.take_file(zip_name, len(entries))
            # Sizes in the archive can lie: they only allow a quick refusal, and the bytes
            # actually unpacked are counted again below.
            if sum(e.file_size for e in entries) > budget.bytes_left():
                raise budget.too_large(zip_name)
            unpacked = []
            for entry, name in zip(entries, names, strict=True):
                shown = f"{zip_name}:{entry.filename}"
                with zf.open(entry) as stream:
                    unpacked.append((shown, _copy(stream, name, shown, files, budget)))
            return unpacked
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
        raise Invalid(
            errors.BAD_ZIP, f"{zip_name}: not a readable zip archive ({exc})", file=zip_name
        ) from None


def is_skipped(entry: zipfile.ZipInfo) -> bool:
    """Folders, macOS resource forks and hidden files (.DS_Store) are not data."""
    name = PurePosixPath(entry.filename.replace("\\", "/"))
    return entry.is_dir() or "__MACOSX" in name.parts or name.name.startswith(".")


def entry_name(entry: zipfile.ZipInfo, zip_name: str) -> str:
    """The file name of a zip entry; refuses entries that climb out or are symbolic links."""
    shown = f"{zip_name}:{entry.filename}"
    name = safe_name(entry.filename, shown=shown)
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise Invalid(
            errors.UNSAFE_PATH, f"{shown}: a symbolic link; zip the files themselves", file=shown
        )
    return name


def _check_entry(entry: zipfile.ZipInfo, zip_name: str) -> str:
    name = entry_name(entry, zip_name)
    _check_format(name, f"{zip_name}:{entry.filename}")
    return name
