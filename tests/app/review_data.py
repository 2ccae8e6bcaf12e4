"""Helpers for the review loop's tests: finished audits seeded with results (no training),
corrections, exported zips read back, and snapshots of what is stored.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import func, select

from app.db.tables import (
    AnnotationSet,
    Correction,
    Mask,
    Resolution,
    ResolvedCase,
    Review,
    StoredFile,
)
from app.services import lifecycle
from imaging import layout
from imaging.formats import read_mask
from imaging.write import write_array
from tests.app.conftest import Api, Loaded, engine_outputs, submit

# hc18's nine cases in name order; > 0.5 is flagged (cases 1, 3, 5 and 7).
SCORES = [0.05, 0.9, 0.3, 0.75, 0.1, 0.6, 0.2, 0.95, 0.4]


def finish(api: Api, loaded: Loaded, masks: list[Path], out: Path, scores: list[float]) -> int:
    """Submit an audit of ``loaded``'s set and store results as a worker would (no training).

    The cleansed mask of each case is its given mask with the far half of its foreground (along
    the first axis) cleared, so that it differs from the given mask wherever there is one.
    """
    audit_id = int(submit(api, loaded)["id"])
    folder, results, run = engine_outputs(out, masks, scores)
    # engine_outputs names a case by its file's stem: "x.nii" for "x.nii.gz".
    results = [dataclasses.replace(r, case=r.case.removesuffix(".nii")) for r in results]
    for mask in masks:
        given = read_mask(mask, case=mask.stem)
        cleansed = given.array.copy()
        rows = np.nonzero(cleansed)[0]
        if rows.size:
            cleansed[int(np.median(rows)) :] = 0
        target = out / layout.CLEANSED / mask.name
        target.unlink()
        write_array(target, cleansed, given.geometry, kind=layout.CLEANSED)
    with api.sessions() as session:
        lifecycle.claim_audit(session, audit_id)
        assert lifecycle.complete_audit(session, api.store, audit_id, folder, results, run)
    return audit_id


def read_png(data: bytes | Path) -> np.ndarray:
    raw = data.read_bytes() if isinstance(data, Path) else data
    with Image.open(io.BytesIO(raw)) as image:
        return np.asarray(image)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def correct(
    api: Api, audit_id: int, case: str, name: str, data: bytes, role: str = "reviewer"
) -> httpx.Response:
    files = [("files", (name, data, "application/octet-stream"))]
    url = f"/v1/audits/{audit_id}/cases/{case}/corrections"
    return api.client.post(url, headers=api.headers[role], files=files)


def decide(api: Api, audit_id: int, case: str, decision: str) -> dict[str, Any]:
    response = api.post(
        f"/v1/audits/{audit_id}/cases/{case}/review", role="reviewer", json={"decision": decision}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def unzip(response: httpx.Response) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """An exported zip's members (the manifest left out) and its manifest's rows."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = members.pop("manifest.csv").decode()
    return members, list(csv.DictReader(io.StringIO(manifest)))


TABLES = (AnnotationSet, Mask, StoredFile, Review, Correction, Resolution, ResolvedCase)


def snapshot(api: Api) -> tuple[tuple[int, ...], frozenset[str]]:
    """Rows of the tables the review loop writes, and the blobs in the store."""
    with api.sessions() as session:
        rows = tuple(int(session.scalar(select(func.count()).select_from(t)) or 0) for t in TABLES)
    blobs = api.store.blobs
    names = (
        frozenset(p.name for p in blobs.rglob("*") if p.is_file())
        if blobs.exists()
        else frozenset()
    )
    return rows, names


def assert_unchanged(api: Api, before: tuple[tuple[int, ...], frozenset[str]]) -> None:
    """Nothing written: the same rows and blobs as ``before``, and no staging folder left."""
    assert snapshot(api) == before
    tmp = api.store.tmp
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())
