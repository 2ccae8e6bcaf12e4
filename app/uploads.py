"""Receiving uploaded files (plain or in zip archives) into a staging folder, within limits.

Nothing is read into memory whole: each file is copied in chunks and hashed on the way. Every
refusal names the file at fault as the client sent it (``export.zip:a/b.png``), never a path on
the server; the caller's staging folder is removed either way, so a refused upload leaves
nothing behind. Bombs are refused before they cost: a zip by its central directory's sizes and
compression ratios before anything of it is written (and by the bytes counted while it is
unpacked, since declared sizes can lie), an image by the size its header declares before it is
decoded.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from app.errors import InsufficientStorage, Invalid, TooLarge
from app.settings import Settings
from app.storage import LimitExceeded, Written, copy_stream, storage_full
from imaging import metaimage
from imaging.checks import check_image_size
from imaging.errors import ErrorCode, InputError
from imaging.formats import FORMATS, METAIMAGE_DATA, format_of, header_shape, split_name

SUPPORTED = ", ".join(sorted(set(FORMATS)))
ZIP_MAGIC = b"PK\x03\x04"
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError)


@dataclass(frozen=True)
class Limits:
    """An upload's limits; ``Settings`` documents each (``Limits.of``)."""

    max_files: int  # files per upload, zip entries included
    max_bytes: int  # bytes per upload once unpacked
    max_ratio: float = 200.0  # unpacked / compressed, for a zip or entry over ratio_floor
    ratio_floor: int = 64 * 1024**2  # bytes unpacked that any ratio may reach
    max_pixels: int = 2**26  # per 2D image, by its header
    max_voxels: int = 2**28  # per 3D image, by its header

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_files=settings.max_files,
            max_bytes=settings.max_uncompressed_bytes,
            max_ratio=settings.max_compression_ratio,
            ratio_floor=settings.compression_ratio_floor_bytes,
            max_pixels=settings.max_image_pixels,
            max_voxels=settings.max_image_voxels,
        )

    def expansion(self, compressed: int) -> int:
        """The most bytes ``compressed`` bytes of a zip may unpack to."""
        return max(self.ratio_floor, int(self.max_ratio * compressed))


@dataclass(frozen=True)
class Incoming:
    """One received file: its name (``case7.nii.gz``), case name (``case7``), staged copy, and
    the name the client knows it by (``export.zip:a/case7.nii.gz``; default: ``name``).
    """

    name: str
    case: str
    written: Written
    sent_as: str | None = None

    @property
    def shown(self) -> str:
        return self.sent_as or self.name


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
                ErrorCode.TOO_MANY_FILES,
                f"{name}: the upload holds more than {self.limits.max_files} files; "
                "split it into several uploads",
                file=name,
            )

    def bytes_left(self) -> int:
        return self.limits.max_bytes - self.bytes

    def too_large(self, name: str) -> TooLarge:
        return TooLarge(
            ErrorCode.UPLOAD_TOO_LARGE,
            f"{name}: the upload expands to more than {self.limits.max_bytes} bytes; "
            "split it into several uploads",
            file=name,
        )

    def check_ratio(self, name: str, unpacked: int, compressed: int) -> None:
        """Refuse a zip, or one of its entries, that would unpack too far (``Limits``)."""
        if unpacked > self.limits.expansion(compressed):
            raise self.bomb(name, f"declares {unpacked} bytes from {compressed} compressed")

    def bomb(self, name: str, what: str) -> TooLarge:
        return TooLarge(
            ErrorCode.COMPRESSION_RATIO,
            f"{name}: {what}, more than {self.limits.max_ratio:g} times its compressed size "
            f"(past {self.limits.ratio_floor} bytes): refused as a zip bomb; send such files "
            "compressed themselves (.nii.gz, PNG) or split the archive",
            file=name,
        )


Check = Callable[[str, str], None]  # (file name, name shown) -> None, or a refusal


@dataclass(frozen=True)
class Received:
    """A file ``Receiver`` wrote, and the name the client knows it by (``export.zip:a/b.png``)."""

    written: Written
    shown: str

    @property
    def path(self) -> Path:
        return self.written.path


class Receiver:
    """Writes an upload's files under ``root`` within ``limits``, unpacking its zips; every
    file, zip entries included, is counted against the limits as it is written.

    ``by_content``: a part is a zip when its first bytes say so (else when it is named
    ``*.zip``), and so is a zip's entry, which is unpacked in turn, down to ``max_depth`` zips
    deep (a zip deeper than that is refused; 1: a zip's entries are never unpacked).
    ``flat``: every file goes into ``root`` itself and a file name may come only once; else each
    file gets a folder of its own. ``check(name, shown)`` refuses a file by its name, before
    anything of its zip is written. Archives are copied beside ``root`` and removed once
    unpacked.
    """

    def __init__(
        self,
        root: Path,
        limits: Limits,
        *,
        by_content: bool = False,
        max_depth: int = 1,
        flat: bool = True,
        check: Check | None = None,
    ) -> None:
        root.mkdir()
        self.root = root
        self.budget = Budget(limits)
        self.by_content = by_content
        self.max_depth = max_depth
        self.flat = flat
        self.check = check
        self.count = 0

    def part(self, index: int, raw_name: str | None, stream: BinaryIO) -> list[Received]:
        """Receive the upload's part number ``index``: one file, or the files of a zip."""
        name = safe_name(raw_name or "")
        if self._is_zip(name, stream):  # the zip itself is not counted, only what it holds
            try:
                archive = copy_stream(stream, self.root.parent / f"upload-{index}.zip")
            except InsufficientStorage:
                raise storage_full(name, file=name) from None
            received = self._unpack(archive.path, name, depth=1)
            archive.path.unlink()
            return received
        if self.check is not None:
            self.check(name, name)
        self.budget.take_file(name)
        return self._write(stream, name, name, depth=0)

    def _is_zip(self, name: str, stream: BinaryIO) -> bool:
        if not self.by_content:
            return name.lower().endswith(".zip")
        position = stream.tell()
        head = stream.read(len(ZIP_MAGIC))
        stream.seek(position)
        return head == ZIP_MAGIC

    def _destination(self, name: str, shown: str) -> Path:
        if self.flat:
            dest = self.root / name
            if dest.exists():  # same name twice (e.g. in two folders of a zip)
                raise Invalid(
                    ErrorCode.DUPLICATE_CASE, f"{shown}: the upload holds {name} twice", file=shown
                )
            return dest
        self.count += 1
        dest = self.root / f"{self.count:06d}" / name
        dest.parent.mkdir()
        return dest

    def _write(
        self, stream: IO[bytes], name: str, shown: str, depth: int, expands: int | None = None
    ) -> list[Received]:
        """Write one file (already counted by ``budget.take_file``); unpack it if it is a zip
        told by content. ``expands``: the most bytes a zip entry may unpack to (its ratio).
        """
        dest = self._destination(name, shown)
        left = self.budget.bytes_left()
        try:
            written = copy_stream(stream, dest, limit=min(left, expands or left))
        except LimitExceeded:
            if expands is not None and expands < left:
                raise self.budget.bomb(shown, f"unpacks to more than {expands} bytes") from None
            raise self.budget.too_large(shown) from None
        except InsufficientStorage:  # named as the client knows it
            raise storage_full(shown, file=shown) from None
        self.budget.bytes += written.size
        if not self.by_content or depth == 0:  # a part was told a zip or not already
            return [Received(written, shown)]
        with dest.open("rb") as f:
            if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                return [Received(written, shown)]
        if depth >= self.max_depth:
            raise Invalid(
                ErrorCode.BAD_ZIP,
                f"{shown}: zips nested more than {self.max_depth} deep; unpack some levels first",
                file=shown,
            )
        received = self._unpack(dest, shown, depth + 1)
        # The inner zip itself is no file of the upload: only what it holds counts.
        dest.unlink()
        if not self.flat:
            dest.parent.rmdir()
        self.budget.bytes -= written.size
        self.budget.files -= 1
        return received

    def _unpack(self, archive: Path, shown: str, depth: int) -> list[Received]:
        """Write a zip's files (its folders flattened), after checking every entry's name and
        the entries' count and declared sizes.
        """
        try:
            with zipfile.ZipFile(archive) as zf:
                entries = [e for e in zf.infolist() if not is_skipped(e)]
                names = [self._entry_name(e, shown) for e in entries]
                self.budget.take_file(shown, len(entries))
                # Sizes in the archive can lie: they only allow a quick refusal, and the bytes
                # actually unpacked are counted as they are written.
                declared = sum(e.file_size for e in entries)
                if declared > self.budget.bytes_left():
                    raise self.budget.too_large(shown)
                for entry in entries:  # each entry first, to name the one at fault
                    where = f"{shown}:{entry.filename}"
                    self.budget.check_ratio(where, entry.file_size, entry.compress_size)
                self.budget.check_ratio(shown, declared, archive.stat().st_size)
                received = []
                for entry, name in zip(entries, names, strict=True):
                    where = f"{shown}:{entry.filename}"
                    expands = self.budget.limits.expansion(entry.compress_size)
                    with zf.open(entry) as stream:
                        received += self._write(stream, name, where, depth, expands)
                return received
        except ZIP_ERRORS as exc:
            raise Invalid(
                ErrorCode.BAD_ZIP, f"{shown}: not a readable zip archive ({exc})", file=shown
            ) from None

    def _entry_name(self, entry: zipfile.ZipInfo, zip_name: str) -> str:
        name = entry_name(entry, zip_name)
        if self.check is not None:
            self.check(name, f"{zip_name}:{entry.filename}")
        return name


def nothing_received() -> Invalid:
    return Invalid(ErrorCode.EMPTY_UPLOAD, "the upload holds no files; send them as 'files'")


def receive(
    parts: Iterable[tuple[str | None, BinaryIO]], folder: Path, limits: Limits
) -> list[Incoming]:
    """Copy uploaded ``(file name, stream)`` parts into ``folder``; zips are unpacked there,
    their folders flattened, and every file must be of a supported format.
    """
    receiver = Receiver(folder / "files", limits, check=_check_format)
    received: dict[str, Incoming] = {}
    for index, (raw_name, stream) in enumerate(parts):
        for item in receiver.part(index, raw_name, stream):
            check_header(item.path, item.shown, limits)
            name = item.path.name
            case = split_name(Path(name))[0]
            _add(received, Incoming(name, case, item.written, item.shown), item.shown)
    if not received:
        raise nothing_received()
    return list(received.values())


def check_header(path: Path, shown: str, limits: Limits) -> None:
    """Refuse an image or mask by its header, before any of its pixels is decoded: larger than
    the pixel or voxel limit (413), or refused as it is (422: no pixels, data in another file).
    A header that cannot be parsed at all is left to the checks that read the file (its
    reader fails on it the same way, after the service's own checks of the upload).
    """
    try:
        shape = header_shape(path)
        check_image_size(
            shape,
            name=shown,
            max_pixels=limits.max_pixels,
            max_voxels=limits.max_voxels,
            setting="SEGAUDIT_MAX_IMAGE_",
        )
    except InputError as exc:
        if exc.code == ErrorCode.IMAGE_TOO_LARGE:
            detail = exc.detail if exc.detail.startswith(shown) else f"{shown}: {exc.detail}"
            raise TooLarge(exc.code, detail, file=shown) from None
        raise Invalid(exc.code, f"{shown}: {exc.detail}", file=shown) from None
    except Exception:  # no header to go by: the reader refuses it, naming it
        return


def safe_name(raw: str, *, shown: str | None = None) -> str:
    """The file name of an upload or zip entry; refuses names that climb out of the folder."""
    shown = shown or raw
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", raw):
        raise Invalid(
            ErrorCode.UNSAFE_PATH,
            f"{shown}: the path leads outside the upload folder; name files without '..' or a "
            "leading '/'",
            file=shown,
        )
    if not path.name or path.name in (".", ".."):
        raise Invalid(ErrorCode.UNSAFE_PATH, f"'{shown}' is not a file name", file=shown)
    return path.name


def _check_format(name: str, shown: str) -> None:
    if split_name(Path(name))[1] in METAIMAGE_DATA:  # a .mhd's voxels: one file per image here
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{shown}: a MetaImage data file; the service takes one file per image: "
            f"{metaimage.ONE_FILE}",
            file=shown,
        )
    if format_of(Path(name)) is None:
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{shown}: unsupported file type '{split_name(Path(name))[1]}' "
            f"(supported: {SUPPORTED}, or one .zip of them)",
            file=shown,
        )


def _add(received: dict[str, Incoming], incoming: Incoming, shown: str) -> None:
    earlier = received.get(incoming.case)
    if earlier is not None:
        raise Invalid(
            ErrorCode.DUPLICATE_CASE,
            f"{shown}: the upload holds two files for case '{incoming.case}' "
            f"({earlier.name} and {incoming.name})",
            file=shown,
        )
    received[incoming.case] = incoming


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
            ErrorCode.UNSAFE_PATH, f"{shown}: a symbolic link; zip the files themselves", file=shown
        )
    return name
