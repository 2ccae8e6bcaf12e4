"""`segaudit storage gc`: stale staging and blobs no `files` row names go; nothing else does."""

from __future__ import annotations

import hashlib
import os
import time

from sqlalchemy import select

from app.db.tables import StoredFile
from app.settings import get_settings
from cli.main import main
from tests.app.conftest import api_factory, load_dataset  # noqa: F401  fixtures


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def _blob(store, content: bytes, age_s: float):
    sha = hashlib.sha256(content).hexdigest()
    path = store.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    _age(path, age_s)
    return path


def test_gc_removes_old_orphans_and_stale_staging_only(
    monkeypatch,
    capsys,
    api_factory,  # noqa: F811  the fixture imported above
    hc18,
    db_url,
):
    api = api_factory()
    images, masks = hc18
    load_dataset(api, images[:3], masks[:3])
    store = api.store
    with api.sessions() as session:
        named = set(session.scalars(select(StoredFile.sha256)))
    assert len(named) == 6
    for sha in named:  # rows' blobs look old too: gc must keep them for their rows
        _age(store.path(sha), 3 * 3600)

    old_orphan = _blob(store, b"left by a killed publish", 2 * 3600)
    new_orphan = _blob(store, b"being published right now", 60)
    stale = store.new_folder()
    (stale / "files").mkdir()
    (stale / "files" / "x.png").write_bytes(b"x" * 1000)
    for path in (stale / "files" / "x.png", stale / "files", stale):
        _age(path, 7 * 3600)
    live = store.new_folder()
    (live / "part.zip").write_bytes(b"y")

    monkeypatch.setenv("SEGAUDIT_DATABASE_URL", db_url)
    monkeypatch.setenv("SEGAUDIT_STORAGE_DIR", str(store.root))

    def gc(*extra):
        get_settings.cache_clear()
        try:
            code = main(["storage", "gc", *extra])
        finally:
            get_settings.cache_clear()
        return code, capsys.readouterr()

    code, out = gc("--dry-run")
    assert code == 0
    assert f"would remove blob {old_orphan}" in out.out
    assert f"would remove staging {stale}" in out.out
    assert str(new_orphan) not in out.out and str(live) not in out.out
    assert "would remove 1 staging entries and 1 orphan blobs" in out.err
    assert old_orphan.exists() and stale.exists()  # a dry run removes nothing

    code, out = gc()
    assert code == 0 and "removed 1 staging entries and 1 orphan blobs" in out.err
    assert not old_orphan.exists() and not stale.exists()
    assert new_orphan.exists() and live.exists()
    assert all(store.has(sha) for sha in named)
    # The service still serves the dataset's files after the collection.
    listed = api.get("/v1/datasets")
    assert listed.status_code == 200

    code, out = gc()
    assert code == 0 and "removed 0 staging entries and 0 orphan blobs" in out.err
