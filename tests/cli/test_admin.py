"""`segaudit keys ...`: a key is printed once and stored only as a hash."""

from __future__ import annotations

import hashlib
import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.tables import ApiKey
from app.main import create_app
from app.settings import get_settings
from cli.main import main
from tests.app.conftest import make_settings


def run(monkeypatch, db_url, capsys, *argv):
    monkeypatch.setenv("SEGAUDIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        code = main(list(argv))
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_create_list_revoke(monkeypatch, capsys, db_url, tmp_path):
    code, out, err = run(
        monkeypatch, db_url, capsys, "keys", "create", "--project", "lab", "--role", "reviewer"
    )
    assert code == 0 and "not shown again" in err
    [secret] = out.split()
    app = create_app(make_settings(tmp_path, db_url, access_cache_s=0.5))
    with app.state.sessions() as session:
        [row] = session.scalars(select(ApiKey)).all()
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in value for value in stored)
    assert row.role == "reviewer" and secret.startswith(row.prefix)

    with TestClient(app) as client:
        headers = {"X-API-Key": secret}
        assert client.get("/v1/datasets", headers=headers).status_code == 200
        assert client.post("/v1/datasets", headers=headers, json={"name": "d"}).status_code == 201

        code, out, _ = run(monkeypatch, db_url, capsys, "keys", "list", "--project", "lab")
        assert code == 0 and row.prefix in out and secret not in out
        code, out, _ = run(
            monkeypatch, db_url, capsys, "keys", "revoke", "--project", "lab", "--id", str(row.id)
        )
        assert code == 0 and "within 5 s (SEGAUDIT_ACCESS_CACHE_S)" in out
        # The API remembers a valid key for access_cache_s; past that it asks again.
        time.sleep(0.6)
        assert client.get("/v1/datasets", headers=headers).status_code == 401

    code, _, err = run(monkeypatch, db_url, capsys, "keys", "list", "--project", "nobody")
    assert code == 2 and "no project named 'nobody'" in err
