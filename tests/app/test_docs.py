"""The documentation pages load with no network beyond the service, operationIds are the
handlers' names, and /readyz tells anyone what is down but never how (that goes to the log).
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings


def _local_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""", html)
    return [a or b for a, b in urls]


def test_swagger_ui_and_redoc_come_from_the_service(api):
    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = api.client.get(page)
        assert html.status_code == 200, page
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
        urls = _local_urls(html.text)
        assert any(u.endswith(script) for u in urls), urls
        assert all(u.startswith("/") for u in urls), urls  # nothing from another host
        for url in urls:
            asset = api.client.get(url)
            assert asset.status_code == 200, url
        js = api.client.get(next(u for u in urls if u.endswith(script)))
        assert len(js.content) > 500_000 and "javascript" in js.headers["content-type"]
    css = api.client.get("/docs-assets/swagger-ui.css")
    assert css.status_code == 200 and "swagger-ui" in css.text
    assert "SwaggerUIBundle" in api.client.get("/docs-assets/swagger-ui-bundle.js").text
    # Swagger UI 5 reads OpenAPI 3.1, the version FastAPI writes.
    assert api.client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_operation_ids_are_the_handlers_names(api):
    schema = api.client.get("/openapi.json").json()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids), ids
    assert {"create_dataset", "delete_dataset", "get_audit", "readyz"} <= set(ids)
    assert not any(re.search(r"_v1_|_(get|post|delete)$", i) for i in ids)


def test_readyz_keeps_the_reasons_for_the_log(tmp_path, caplog):
    settings = make_settings(
        tmp_path,
        "postgresql+psycopg://segaudit:hunter2@127.0.0.1:9/nothing?connect_timeout=2",
        broker_url="redis://:s3cret@127.0.0.1:1/0",
    )
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "not_ready"
    assert (
        body["detail"].startswith("database: not reachable")
        and "broker: not reachable" in body["detail"]
    )
    for secret in ("hunter2", "s3cret", "127.0.0.1", "Error", "psycopg", "segaudit:"):
        assert secret not in body["detail"]
    logged = "\n".join(r.getMessage() + str(r.exc_info and r.exc_info[1]) for r in caplog.records)
    assert "database is not reachable" in logged and "broker is not reachable" in logged
    assert "OperationalError" in "".join(
        type(r.exc_info[1]).__name__ for r in caplog.records if r.exc_info
    )
