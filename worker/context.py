"""What a task needs from the service: the settings, a database engine and the store."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_engine, make_sessions
from app.settings import Settings, get_settings
from app.storage import Store


@dataclass(frozen=True)
class Context:
    """What a task needs, made once per process (never inherited across a fork)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: Store


_contexts: dict[int, Context] = {}
_lock = threading.Lock()


def context() -> Context:
    """This process's database engine, sessions and store."""
    with _lock:
        pid = os.getpid()
        if pid not in _contexts:
            _contexts.clear()  # a forked child makes its own connections
            settings = get_settings()
            engine = make_engine(settings.database_url)
            sessions = make_sessions(engine)
            _contexts[pid] = Context(settings, engine, sessions, Store(settings.storage))
        return _contexts[pid]
