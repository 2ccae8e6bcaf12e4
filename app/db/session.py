"""Engines and sessions for PostgreSQL (production, tests) and SQLite (the embedded default)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.settings import ensure_sqlite_folder


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on and a lock wait instead of errors."""
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the worker's writes
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded rows usable after commit (handlers return them)."""
    return sessionmaker(engine, expire_on_commit=False)
