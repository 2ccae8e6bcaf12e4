"""DICOMweb: pull a study or series from a PACS into a folder, push cleansed masks back.

``pull`` searches the study's series (QIDO-RS) and retrieves them as stored (WADO-RS, any
transfer syntax) into ``<dest>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
ready for ``segaudit audit --images DEST --masks DEST``. ``push`` stores DICOM files (STOW-RS),
for example an audit's ``cleansed/`` SEGs, which reference the series they were pulled from.
Failures are ``InputError`` with the code ``pacs_error`` and a sentence that says what failed;
a pull that fails leaves nothing behind.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom.dataset import Dataset

from imaging.errors import ErrorCode, InputError

AS_STORED = (("application/dicom", "*"),)  # WADO-RS: no transcoding


def connect(url: str, *, user: str | None = None, password: str | None = None) -> DICOMwebClient:
    """A client for the DICOMweb service at ``url`` (e.g. ``http://host:8042/dicom-web``)."""
    session = create_session_from_user_pass(user, password or "") if user else None
    client = DICOMwebClient(url=url.rstrip("/"), session=session, timeout=60)
    # Busy servers (429, 503) get retried; a wrong address should fail in seconds, not 30.
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)
    return client


def _failed(url: str, what: str, exc: Exception) -> InputError:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        reason = f"HTTP {exc.response.status_code} {exc.response.reason}"
    elif isinstance(exc, requests.ConnectionError):
        reason = "the server cannot be reached"
    else:
        reason = str(exc)
    return InputError(ErrorCode.PACS_ERROR, f"{what} at {url} failed: {reason}")


def _uid(result: dict[str, Any], keyword: str) -> str:
    return str(Dataset.from_json(result).get(keyword, ""))


def series_of(client: DICOMwebClient, study_uid: str) -> list[str]:
    """Series Instance UIDs of a study (QIDO-RS)."""
    try:
        found = client.search_for_series(study_instance_uid=study_uid, get_remaining=True)
    except (requests.RequestException, OSError) as exc:
        raise _failed(client.base_url, f"searching the series of study {study_uid}", exc) from exc
    return sorted({_uid(r, "SeriesInstanceUID") for r in found} - {""})


def pull(
    client: DICOMwebClient,
    dest: Path,
    *,
    study_uid: str,
    series_uids: Sequence[str] = (),
) -> list[Path]:
    """Retrieve a study (or some of its series) into ``dest``; return the files written."""
    wanted = list(series_uids) or series_of(client, study_uid)
    if not wanted:
        raise InputError(
            ErrorCode.PACS_ERROR, f"study {study_uid} holds no series at {client.base_url}"
        )
    dest = Path(dest)
    staging = dest / f".pull-{uuid.uuid4().hex[:8]}"
    written: list[Path] = []
    try:
        for series_uid in wanted:
            try:
                datasets = client.retrieve_series(study_uid, series_uid, media_types=AS_STORED)
            except (requests.RequestException, OSError) as exc:
                raise _failed(client.base_url, f"retrieving series {series_uid}", exc) from exc
            if not datasets:
                raise InputError(
                    ErrorCode.PACS_ERROR,
                    f"series {series_uid} of study {study_uid} is not at {client.base_url}",
                )
            for ds in datasets:
                path = staging / study_uid / series_uid / f"{ds.SOPInstanceUID}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
        for series_dir in sorted((staging / study_uid).iterdir()):
            target = dest / study_uid / series_dir.name
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            series_dir.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / p.relative_to(staging) for p in written]


def dicom_files(paths: Iterable[Path]) -> list[Path]:
    """The files among ``paths`` and in the folders among them (at any depth), sorted."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(ErrorCode.NOT_A_FOLDER, f"{path} does not exist")
    return sorted(found)


def push(client: DICOMwebClient, paths: Iterable[Path]) -> list[str]:
    """Store DICOM files (STOW-RS); return the SOP Instance UIDs the server accepted."""
    files = dicom_files(paths)
    if not files:
        raise InputError(ErrorCode.EMPTY_FOLDER, "nothing to push: no files given")
    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:  # any parser failure is the same user-facing problem
            raise InputError(ErrorCode.UNREADABLE, f"cannot read DICOM file {path}: {exc}") from exc
    stored: list[str] = []
    for study_uid in sorted({str(ds.StudyInstanceUID) for ds in datasets}):
        batch = [ds for ds in datasets if ds.StudyInstanceUID == study_uid]
        try:
            response = client.store_instances(batch, study_instance_uid=study_uid)
        except (requests.RequestException, OSError) as exc:
            raise _failed(client.base_url, f"storing {len(batch)} instances", exc) from exc
        failed = response.get("FailedSOPSequence", [])
        if failed:
            first = failed[0]
            raise InputError(
                ErrorCode.PACS_ERROR,
                f"{client.base_url} refused {len(failed)} of {len(batch)} instances (for "
                f"example {first.get('ReferencedSOPInstanceUID', '?')}, failure reason "
                f"{first.get('FailureReason', '?')})",
            )
        stored += [
            str(i.ReferencedSOPInstanceUID) for i in response.get("ReferencedSOPSequence", [])
        ]
    return stored
