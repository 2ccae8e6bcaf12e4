"""The FastAPI application. Run it with ``uvicorn app.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import docs_assets, logs
from app.api import docs, errors
from app.api.deps import Remembered
from app.api.limits import BodyLimit
from app.api.routes import (
    annotation_sets,
    audits,
    comparisons,
    datasets,
    dicomweb,
    health,
    keys,
    removal,
    results,
    review_loop,
    ui,
)
from app.db.session import make_engine, make_sessions
from app.queue import make_client
from app.services import sweep
from app.settings import Settings, get_settings
from app.storage import Store
from imaging import __version__, formats

DESCRIPTION = """\
Upload images and masks, audit the masks for label noise, read per-case noise scores and
download cleansed masks. Every request but /healthz and /readyz needs an `X-API-Key` header; a
key sees only its own project. Errors are JSON `{"code": ..., "detail": ..., "file": ...}`
(`file`: the uploaded file at fault, as sent, where there is one), whatever the status.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service, wired to ``settings`` (default: the environment's)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    celery = make_client(settings.broker_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweep.at_start_up(app.state.sessions, app.state.store, settings)  # crash leftovers
        yield
        engine.dispose()
        celery.close()

    app = FastAPI(
        title="segaudit",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs_assets serves /docs and /redoc without a CDN
        redoc_url=None,
        generate_unique_id_function=docs_assets.operation_id,
    )
    app.state.settings = settings
    formats.allow_pixels(settings.max_image_pixels)  # PIL's own check may not refuse first
    app.state.engine = engine
    app.state.sessions = make_sessions(engine)
    app.state.store = Store(settings.storage, staging_max_age_s=settings.staging_max_age_s)
    app.state.celery = celery
    app.state.remembered = Remembered.new(settings.access_cache_s)
    errors.install(app)
    docs_assets.install(app)
    for module in (
        health,
        keys,
        datasets,
        annotation_sets,
        audits,
        results,
        dicomweb,
        removal,
        review_loop,
        comparisons,
        ui,
    ):
        app.include_router(module.router)
    app.openapi = partial(docs.truthful_openapi, app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    # Added last, so outermost: refusals (413 included) carry the CORS headers too.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Content-Disposition", logs.HEADER],
    )
    app.add_middleware(logs.RequestId)  # outermost: every answer carries its id
    return app
