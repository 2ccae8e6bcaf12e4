"""One settings object from SEGAUDIT_* variables, with defaults that need no server."""

from __future__ import annotations

from app.settings import Settings, sqlite_path


def test_defaults_live_in_the_data_folder(monkeypatch, tmp_path):
    for name in ("DATA_DIR", "DATABASE_URL", "STORAGE_DIR", "BROKER_URL", "CORS_ORIGINS"):
        monkeypatch.delenv(f"SEGAUDIT_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'segaudit.db'}"
    assert settings.storage == tmp_path / "var" / "storage"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    assert sqlite_path(settings.broker_url) == tmp_path / "var" / "broker.db"
    assert settings.audit_queue == "gpu" and settings.cors_origins == []


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGAUDIT_DATABASE_URL", "postgresql+psycopg://db/segaudit")
    monkeypatch.setenv("SEGAUDIT_STORAGE_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("SEGAUDIT_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("SEGAUDIT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SEGAUDIT_MAX_REQUEST_BYTES", "1000")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://db/segaudit"
    assert settings.storage == tmp_path / "files"
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.max_request_bytes == 1000
