"""Reading a multipart upload into a staging folder, after the caller is authenticated."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.dicom_uploads import DicomUpload, is_dicom_upload, receive_dicom
from app.errors import Invalid, TooLarge
from app.settings import Settings
from app.uploads import Incoming, Limits, receive
from imaging.errors import ErrorCode

Parts = list[tuple[str | None, BinaryIO]]


def _receive(parts: Parts, folder: Path, limits: Limits) -> list[Incoming] | DicomUpload:
    if is_dicom_upload(parts):
        return receive_dicom(parts, folder, limits)
    return receive(parts, folder, limits)


async def receive_upload(
    request: Request, settings: Settings, folder: Path
) -> list[Incoming] | DicomUpload:
    """The uploaded files, copied into ``folder`` (zips unpacked) within the settings' limits:
    image or mask files by name, or a DICOM upload (``DicomUpload``) when it holds DICOM.

    Starlette spools each part to a temporary file as it arrives (never the whole body in
    memory); the copy into ``folder`` is hashed and counted against the limits.
    """
    limits = Limits.of(settings)
    try:
        async with request.form(max_files=settings.max_files, max_fields=100) as form:
            parts: Parts = [
                (value.filename, value.file)
                for _, value in form.multi_items()
                if isinstance(value, UploadFile)
            ]
            return await run_in_threadpool(_receive, parts, folder, limits)
    except (MultiPartException, HTTPException) as exc:
        # Starlette reports multipart problems as MultiPartException, or as a 400 inside an app.
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        if isinstance(exc, HTTPException) and exc.status_code != 400:
            raise  # e.g. the body size limit
        if "Too many files" in message:
            raise TooLarge(
                ErrorCode.TOO_MANY_FILES,
                f"the upload holds more than {settings.max_files} files; split it or zip them",
            ) from None
        raise Invalid(
            ErrorCode.BAD_MULTIPART, f"the upload is not valid multipart: {message}"
        ) from None
