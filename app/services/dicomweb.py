"""DICOMweb through the API: pull a study into a dataset, push an audit's cleansed masks (or an
annotation set's masks, e.g. a resolved set) back.

The transfers are ``imaging.dicom.web``'s (QIDO-RS, WADO-RS, STOW-RS); a pulled study goes
through the same checks as an uploaded PACS export (``app.services.dicom.add_series``). The
service only talks to servers listed in ``SEGAUDIT_DICOMWEB_SERVERS``: a caller must not make
it send requests to any address on its network. A failure of the server is a 502
``pacs_error``; credentials are used for the one request and never stored or logged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dicomweb_client.api import DICOMwebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus
from app.db.tables import AnnotationSet, Audit, Case, Dataset, Mask, ResultRow, StoredFile
from app.dicom_uploads import DicomUpload
from app.errors import BadGateway, Conflict, Forbidden, Invalid, NotFound, TooLarge
from app.services import dicom
from app.settings import Settings
from app.storage import Store
from imaging.dicom import web
from imaging.errors import ErrorCode, InputError
from imaging.geometry import DICOM_RTSTRUCT, DICOM_SEG

T = TypeVar("T")
DEFAULT_PORTS = {"http": 80, "https": 443}
DICOM_FORMATS = (DICOM_SEG, DICOM_RTSTRUCT, "dicom")


@dataclass(frozen=True)
class Server:
    """Where and as whom to connect (``password`` as given, never stored)."""

    url: str
    user: str | None = None
    password: str | None = None


def _origin(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def check_server(url: str, allowed: list[str]) -> None:
    """Refuse a URL that is not an http(s) DICOMweb root among ``allowed`` (or under one);
    ``"*"`` in ``allowed`` allows any.
    """
    try:
        parts = urlsplit(url)
        scheme, host, _, path = _origin(url)
    except ValueError as exc:  # e.g. a port that is no number
        raise Invalid(
            ErrorCode.INVALID_REQUEST, f"url: {url!r} is not a valid URL ({exc})"
        ) from None
    if scheme not in DEFAULT_PORTS or not host:
        raise Invalid(ErrorCode.INVALID_REQUEST, f"url: {url!r} is not an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise Invalid(
            ErrorCode.INVALID_REQUEST,
            "url: give credentials as 'user' and 'password', not in the URL",
        )
    if parts.query or parts.fragment or ".." in path.split("/"):
        raise Invalid(
            ErrorCode.INVALID_REQUEST, "url: a DICOMweb root has no query, fragment or '..'"
        )
    if "*" in allowed:
        return
    for base in allowed:
        b_scheme, b_host, b_port, b_path = _origin(base)
        if _origin(url)[:3] == (b_scheme, b_host, b_port) and (
            path == b_path or path.startswith(b_path + "/")
        ):
            return
    configured = "none is configured" if not allowed else f"allowed: {', '.join(allowed)}"
    raise Forbidden(
        ErrorCode.SERVER_NOT_ALLOWED,
        f"{url} is not a DICOMweb server this service may use ({configured}; the setting is "
        "SEGAUDIT_DICOMWEB_SERVERS)",
    )


def _call(server: Server, action: Callable[[DICOMwebClient], T]) -> T:
    """Run ``action`` on a client of ``server``; the server's failures become a 502."""
    client = web.connect(server.url, user=server.user, password=server.password)
    try:
        return action(client)
    except InputError as exc:
        if exc.code == ErrorCode.PACS_ERROR:
            raise BadGateway(exc.code, str(exc)) from None
        raise
    except (ValueError, TypeError, KeyError) as exc:  # an answer dicomweb-client cannot parse
        raise BadGateway(
            ErrorCode.PACS_ERROR,
            f"the answer of {server.url} could not be read as DICOMweb: {exc}",
        ) from None


def _check_pulled(files: list[Path], study_uid: str, settings: Settings) -> None:
    if len(files) > settings.max_files:
        raise TooLarge(
            ErrorCode.TOO_MANY_FILES,
            f"study {study_uid} holds {len(files)} instances, more than the limit of "
            f"{settings.max_files} per upload; pull some of its series (series_uids)",
        )
    size = sum(p.stat().st_size for p in files)
    if size > settings.max_uncompressed_bytes:
        raise TooLarge(
            ErrorCode.UPLOAD_TOO_LARGE,
            f"study {study_uid} is {size} bytes, more than the limit of "
            f"{settings.max_uncompressed_bytes} per upload; pull some of its series (series_uids)",
        )


def pull(
    session: Session,
    store: Store,
    dataset: Dataset,
    settings: Settings,
    server: Server,
    *,
    study_uid: str,
    series_uids: list[str],
    folder: Path,
) -> tuple[list[Case], list[str]]:
    """Retrieve a study (or some of its series) into ``folder`` and add its image series to
    the dataset as an uploaded PACS export would be; all or nothing. Commits.
    """
    check_server(server.url, settings.dicomweb_servers)
    if dicom.is_dicom_dataset(session, dataset.id) is False:  # refused before the transfer
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"dataset {dataset.id} holds image files (PNG, TIFF, NIfTI, NRRD); DICOM series go "
            "into a dataset of their own",
        )
    root = folder / "upload"
    files = _call(server, lambda c: web.pull(c, root, study_uid=study_uid, series_uids=series_uids))
    _check_pulled(files, study_uid, settings)
    shown = {p: f"{p.parent.name}/{p.name}" for p in files}  # <series UID>/<SOP UID>.dcm
    upload = DicomUpload(root, shown, f"study {study_uid}")
    return dicom.add_series(session, store, dataset, upload)


def push(
    session: Session,
    store: Store,
    audit: Audit,
    settings: Settings,
    server: Server,
    *,
    cases: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Store the audit's cleansed SEG (or RTSTRUCT) objects on the server; return the cases
    pushed and the SOP Instance UIDs the server stored.
    """
    check_server(server.url, settings.dicomweb_servers)
    if audit.status != AuditStatus.succeeded:
        raise Conflict(
            ErrorCode.AUDIT_NOT_FINISHED,
            f"audit {audit.id} is {audit.status}; its cleansed masks are pushed once it succeeded",
        )
    found = session.execute(
        select(Case.name, StoredFile)
        .join(ResultRow, ResultRow.case_id == Case.id)
        .join(StoredFile, StoredFile.id == ResultRow.cleansed_file_id)
        .where(ResultRow.audit_id == audit.id)
        .order_by(Case.name)
    )
    rows: Sequence[tuple[str, StoredFile]] = [(name, stored) for name, stored in found]
    export = f"GET /v1/audits/{audit.id}/export"
    return _push_masks(store, server, rows, cases, f"audit {audit.id}", "cleansed", export)


def push_set(
    session: Session,
    store: Store,
    aset: AnnotationSet,
    settings: Settings,
    server: Server,
    *,
    cases: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Store an annotation set's SEG (or RTSTRUCT) objects on the server (e.g. a resolved set,
    tag ``final``); return the cases pushed and the SOP Instance UIDs the server stored.
    """
    check_server(server.url, settings.dicomweb_servers)
    found = session.execute(
        select(Case.name, StoredFile)
        .join(Mask, Mask.case_id == Case.id)
        .join(StoredFile, StoredFile.id == Mask.file_id)
        .where(Mask.annotation_set_id == aset.id)
        .order_by(Case.name)
    )
    rows = [(name, stored) for name, stored in found]
    export = f"GET /v1/datasets/{aset.dataset_id}/annotation-sets/{aset.id}/export"
    return _push_masks(store, server, rows, cases, f"annotation set {aset.id}", "", export)


def _push_masks(
    store: Store,
    server: Server,
    rows: Sequence[tuple[str, StoredFile]],
    cases: list[str] | None,
    owner: str,
    kind: str,
    export: str,
) -> tuple[list[str], list[str]]:
    """Push the ``(case, file)`` rows of ``owner`` (only ``cases``, when given): DICOM only."""
    what = f"{kind} masks" if kind else "masks"
    if cases is not None:
        unknown = sorted(set(cases) - {name for name, _ in rows})
        if unknown:
            raise NotFound(
                ErrorCode.NOT_FOUND,
                f"{owner} has no {kind + ' ' if kind else ''}mask for "
                f"{', '.join(map(repr, unknown[:5]))}",
            )
        rows = [(name, f) for name, f in rows if name in set(cases)]
    if not rows:
        raise NotFound(ErrorCode.NOT_FOUND, f"{owner} stored no {what}")
    other = sorted({f.format or "unknown" for _, f in rows if f.format not in DICOM_FORMATS})
    if other:
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{owner}'s {what} are {', '.join(other)} files, not DICOM objects; "
            f"download them instead ({export})",
        )
    paths = [store.path(f.sha256) for _, f in rows]
    if not all(p.is_file() for p in paths):
        raise NotFound(ErrorCode.NOT_FOUND, f"some stored files of {owner} are missing")
    stored = _call(server, lambda c: web.push(c, paths))
    return [name for name, _ in rows], stored
