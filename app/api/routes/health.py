"""Liveness and readiness, for load balancers and orchestrators (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kombu.connection import Connection
from sqlalchemy import text

from app.api.errors import error_response
from app.db import migrate
from app.schemas import ErrorOut
from imaging.errors import ErrorCode

router = APIRouter(tags=["health"])


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
    except Exception as exc:  # any failure means not ready; the reason is reported
        problems.append(f"database: {type(exc).__name__}: {exc}")
    try:
        # kombu's Connection has no annotations.
        broker = Connection(state.settings.broker_url, connect_timeout=2)  # type: ignore[no-untyped-call]
        with broker as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:
        problems.append(f"broker: {type(exc).__name__}: {exc}")
    if problems:
        return error_response(503, ErrorCode.NOT_READY, "; ".join(problems))
    return JSONResponse({"status": "ready", "database": "ok", "broker": "ok"})
