"""Shared pieces of the OpenAPI description."""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorOut

_WHY = {
    401: "no API key, or an unknown or revoked one",
    403: "the key's role is too weak",
    404: "no such resource in the key's project",
    409: "conflicts with the resource's state",
    413: "the upload is over a size or file-count limit",
    422: "the request or an uploaded file is refused; the body names it and why",
    502: "the PACS (DICOMweb server) failed or refused the request; the body says how",
    503: "the task queue is unreachable",
}


def errors_of(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry of a route that can fail with ``codes`` (401 and 403 always)."""
    return {c: {"model": ErrorOut, "description": _WHY[c]} for c in sorted({401, 403, *codes})}


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "image or mask files (.png .tif .tiff .nii .nii.gz "
                            ".nrrd), or one .zip of them; the case is the file name without "
                            "extension. DICOM: a PACS export (files or zips, nested any way), "
                            "or SEG / RTSTRUCT files; a case is one series",
                        }
                    },
                }
            }
        },
    }
}
