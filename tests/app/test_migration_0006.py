"""Migration 0006 renames the DICOM cases of an older database by their pseudonyms, reads their
patient labels from the stored series, and renames their files with them.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from sqlalchemy import insert, select

from app.db import migrate, tables
from app.db.base import utcnow
from app.db.session import make_engine
from app.settings import get_settings
from app.storage import Store
from imaging.dicom.labels import pseudonym
from tests.app.dicom_data import with_patients


@pytest.fixture(params=["sqlite", "postgresql"])
def old_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("fresh_pg")
    engine = make_engine(url)
    migrate.upgrade(engine, "0005")
    yield engine
    engine.dispose()


def _blob(store: Store, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    path = store.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha


def test_old_dicom_cases_get_their_pseudonyms_and_labels(old_engine, built, tmp_path, monkeypatch):
    case = with_patients(built[:1])[0]
    monkeypatch.setenv("SEGAUDIT_STORAGE_DIR", str(tmp_path / "storage"))
    get_settings.cache_clear()
    store = Store(tmp_path / "storage")
    first = case.images[0]
    buffer, member = io.BytesIO(), io.BytesIO()
    first.save_as(member, enforce_file_format=True)
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{first.SeriesInstanceUID}/{first.SOPInstanceUID}.dcm", member.getvalue())
    series_sha = _blob(store, buffer.getvalue())
    old = "PHI12345_s1"
    now = utcnow()
    with old_engine.begin() as c:
        t = {name: tables.Base.metadata.tables[name] for name in ("projects", "datasets")}
        project = c.execute(
            insert(t["projects"]).values(name="p", created_at=now)
        ).inserted_primary_key[0]
        dataset = c.execute(
            insert(t["datasets"]).values(
                project_id=project, name="d", description="", created_at=now
            )
        ).inserted_primary_key[0]
        files = tables.StoredFile.__table__

        def add_file(name: str, fmt: str, sha: str) -> int:
            row = insert(files).values(
                sha256=sha, size_bytes=1, name=name, format=fmt, created_at=now
            )
            return int(c.execute(row).inserted_primary_key[0])

        image = add_file(f"{old}.zip", "dicom-series", series_sha)
        case_id = c.execute(
            insert(tables.Case.__table__).values(
                dataset_id=dataset,
                name=old,
                image_file_id=image,
                shape=[1, 1, 1],
                spacing=[1.0, 1.0, 1.0],
                affine=[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]],
                channels=1,
                created_at=now,
            )
        ).inserted_primary_key[0]
        aset = c.execute(
            insert(tables.AnnotationSet.__table__).values(
                dataset_id=dataset, name="s", description="", tag="original", created_at=now
            )
        ).inserted_primary_key[0]
        mask = add_file(f"{old}.dcm", "dicom-seg", "0" * 64)
        c.execute(
            insert(tables.Mask.__table__).values(
                annotation_set_id=aset, case_id=case_id, file_id=mask, max_label=1, created_at=now
            )
        )
        other = add_file("000_HC.png", "png", "1" * 64)  # an image file: left alone

    try:
        migrate.upgrade(old_engine)
    finally:
        get_settings.cache_clear()

    expected = pseudonym(str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
    with old_engine.connect() as c:
        name, labels = c.execute(
            select(tables.Case.name, tables.Case.dicom_labels).where(tables.Case.id == case_id)
        ).one()
        names = dict(c.execute(select(files.c.id, files.c.name)).all())
    assert name == expected
    assert labels["patient_id"] == "PHI12345" and labels["patient_name"] == "Zyxwvut^Quorbl"
    assert labels["series_uid"] == first.SeriesInstanceUID
    assert names == {image: f"{expected}.zip", mask: f"{expected}.dcm", other: "000_HC.png"}
