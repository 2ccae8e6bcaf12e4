"""Liveness and readiness, for load balancers and orchestrators (no key needed).

Anyone may call them, so a failure is answered with a code and a generic sentence per
component; the exception itself (hosts, users, driver messages) goes to the service's log.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kombu.connection import Connection
from sqlalchemy import text

from app.api.errors import error_response
from app.db import migrate
from app.schemas import ErrorOut
from imaging.errors import ErrorCode

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut, "description": "not ready"}})
def readyz(request: Request) -> JSONResponse:
    """The database is reachable and migrated, and the broker is reachable."""
    problems = []
    state = request.app.state
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        at, head = migrate.current(state.engine), migrate.head()
        if at != head:
            problems.append(f"database: at revision {at}, not {head}; run `segaudit db upgrade`")
    except Exception:  # any failure means not ready; the details go to the log only
        log.warning("readyz: the database is not reachable", exc_info=True)
        problems.append("database: not reachable (the service's log says why)")
    try:
        # kombu's Connection has no annotations.
        broker = Connection(state.settings.broker_url, connect_timeout=2)  # type: ignore[no-untyped-call]
        with broker as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception:
        log.warning("readyz: the broker is not reachable", exc_info=True)
        problems.append("broker: not reachable (the service's log says why)")
    if problems:
        return error_response(503, ErrorCode.NOT_READY, "; ".join(problems))
    return JSONResponse({"status": "ready", "database": "ok", "broker": "ok"})
