"""The service as a whole: JSON errors everywhere, health, CORS, the OpenAPI description."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings


def test_errors_are_json_with_a_code(api):
    unknown = api.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    wrong_method = api.client.delete("/v1/datasets", headers=api.headers["admin"])
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    empty_name = api.post("/v1/datasets", json={"name": ""})
    assert empty_name.status_code == 422
    assert empty_name.json() == {
        "code": "invalid_request",
        "detail": "name: String should have at least 1 character",
    }
    broken = api.post(
        "/v1/datasets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["code"] == "invalid_request"
    bad_page = api.get("/v1/datasets", params={"limit": 0})
    assert bad_page.status_code == 422 and "limit" in bad_page.json()["detail"]


def test_a_500_is_json_without_a_trace(tmp_path, monkeypatch):
    from app.services import datasets

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/segaudit")

    monkeypatch.setattr(datasets, "list_datasets", broken)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    from app.db import migrate
    from app.db.session import make_engine

    migrate.upgrade(make_engine(settings.database_url))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/v1/datasets", headers={"X-API-Key": "sa_anything"})
        assert response.status_code == 401  # the key is checked before anything runs
        from app.db.enums import Role
        from app.services import keys

        with client.app.state.sessions() as session:
            _, key = keys.create_key(session, keys.get_or_create_project(session, "p"), Role.viewer)
        response = client.get("/v1/datasets", headers={"X-API-Key": key})
    assert response.status_code == 500
    assert response.json() == {
        "code": "internal_error",
        "detail": "the server failed to handle this request; the error was logged",
    }


def test_an_unreachable_database_is_a_503_without_a_trace(tmp_path):
    settings = make_settings(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/v1/datasets", headers={"X-API-Key": "sa_anything"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "127.0.0.1" not in body["detail"] and "Traceback" not in body["detail"]


def test_health_and_readiness(api, api_factory, tmp_path):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    no_broker = api_factory(broker_url="redis://127.0.0.1:1/0").client.get("/readyz")
    assert no_broker.status_code == 503 and no_broker.json()["code"] == "not_ready"
    assert no_broker.json()["detail"].startswith("broker:")


def test_an_unmigrated_database_is_not_ready(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "run `segaudit db upgrade`" in response.json()["detail"]


def test_cors_allows_the_configured_origins_only(api):
    allowed = "https://dash.example.org"
    preflight = api.client.options(
        "/v1/datasets",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed
    listed = api.get("/v1/datasets", headers={"Origin": allowed})
    assert listed.headers["access-control-allow-origin"] == allowed
    other = api.client.get(
        "/v1/datasets", headers={**api.headers["viewer"], "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_openapi_describes_every_operation(api):
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description") or operation.get("summary"), where
            if path.startswith("/v1/"):
                assert "401" in operation["responses"], where
                assert operation["security"] == [{"APIKeyHeader": []}], where
            body = operation.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in body:
                assert "files" in body["multipart/form-data"]["schema"]["properties"], where
    for name in ("AuditCreate", "AuditOut", "ResultOut", "ErrorOut"):
        assert schemas[name].get("examples"), name
    assert "epochs" in schemas["AuditConfig"]["properties"]
