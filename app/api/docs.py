"""Shared pieces of the OpenAPI description."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.api.params import MAX_ID
from app.schemas import ErrorOut

_WHY = {
    401: "no API key, or an unknown or revoked one",
    403: "the key's role is too weak",
    404: "no such resource in the key's project",
    409: "conflicts with the resource's state",
    413: "the upload is over a size or file-count limit",
    422: "the request or an uploaded file is refused; the body names it and why",
    502: "the PACS (DICOMweb server) failed or refused the request; the body says how",
    503: "the database or the task queue is unreachable for now; send the request again later",
    507: "the storage has no space left; nothing was kept (code storage_full)",
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


# What FastAPI documents for a refused request that its own validation answers, and the one
# shape every error has in fact.
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_NOT_JSON = "the body is not JSON text in UTF-8 (code bad_request)"
_INVALID = "a parameter or the body does not fit the schema; the body names which and why"
_NO_DATABASE = "the database is unreachable for now (code database_unavailable); retry later"


def truthful_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, with every error response as the API answers it: the
    ``ErrorOut`` shape in place of FastAPI's ``HTTPValidationError`` for 422, a 422 on every
    operation that takes input, and a 400 on every one with a JSON body (one that is not
    UTF-8 JSON).
    """
    spec: dict[str, Any] = FastAPI.openapi(app)  # FastAPI's own, cached per routes
    if getattr(app.state, "openapi_fixed", None) is not spec:
        _document_errors(spec)
        app.state.openapi_fixed = spec
    return spec


def _document_errors(spec: dict[str, Any]) -> None:
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            body = operation.get("requestBody", {}).get("content", {})
            if operation.get("parameters") or body:
                why = responses.get("422", {}).get("description", _INVALID)
                responses["422"] = {"description": why, "content": _ERROR}
            if "application/json" in body:
                responses.setdefault("400", {"description": _NOT_JSON, "content": _ERROR})
            if path.startswith("/v1/"):  # every such operation reads the database
                responses.setdefault("503", {"description": _NO_DATABASE, "content": _ERROR})
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response["content"] = _ERROR
            operation["responses"] = dict(sorted(responses.items()))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
    if "AuditConfig" in schemas:  # a dataclass of models/: its ints bounded by AuditCreate
        _bound_integers(schemas["AuditConfig"])


def _bound_integers(schema: dict[str, Any]) -> None:
    """Document the range ``AuditCreate`` holds every integer of the parameters to."""
    if schema.get("type") == "integer":
        schema.setdefault("maximum", MAX_ID)
        schema.setdefault("minimum", -MAX_ID)
    for key in ("properties", "$defs"):
        for child in schema.get(key, {}).values():
            _bound_integers(child)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for child in schema.get(key, []):
            _bound_integers(child)
    if isinstance(schema.get("items"), dict):
        _bound_integers(schema["items"])
