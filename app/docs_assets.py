"""The API's documentation pages (/docs, /redoc) served with no CDN: Swagger UI and ReDoc come
from the ``fastapi-offline`` package's files, mounted under /docs-assets, so the pages load in a
hospital network that reaches nothing outside.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_folder() -> Path:
    """Where the installed fastapi-offline package keeps swagger-ui-bundle.js and the rest."""
    return Path(str(files("fastapi_offline") / "static"))


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operationId: its handler's name (``create_dataset``), unique across
    the API, so generated clients get methods named after what they do.
    """
    return route.name


def install(app: FastAPI) -> None:
    """Serve /docs, /docs/oauth2-redirect and /redoc from local files. ``app`` must be made
    with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load from a CDN).
    """
    app.mount(ASSETS, StaticFiles(directory=assets_folder()), name="docs-assets")
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=redirect,
        )

    @app.get(redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
