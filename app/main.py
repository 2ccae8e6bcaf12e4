"""The FastAPI application. Run it with ``uvicorn app.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api import errors
from app.api.limits import BodyLimit
from app.api.routes import annotation_sets, audits, datasets, dicomweb, health, keys, results
from app.db.session import make_engine, make_sessions
from app.queue import make_client
from app.settings import Settings, get_settings
from app.storage import Store
from imaging import __version__

DESCRIPTION = """\
Upload images and masks, audit the masks for label noise, read per-case noise scores and
download cleansed masks. Every request but /healthz and /readyz needs an `X-API-Key` header; a
key sees only its own project. Errors are JSON `{"code": ..., "detail": ...}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service, wired to ``settings`` (default: the environment's)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    celery = make_client(settings.broker_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()
        celery.close()

    app = FastAPI(title="segaudit", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessions(engine)
    app.state.store = Store(settings.storage)
    app.state.celery = celery
    errors.install(app)
    for module in (health, keys, datasets, annotation_sets, audits, results, dicomweb):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    # Added last, so outermost: refusals (413 included) carry the CORS headers too.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Content-Disposition"],
    )
    return app
