"""The OpenAPI document tells the truth: schemathesis fuzzes every operation (valid and invalid
data, a fixed seed, a bounded number of examples) against the app on SQLite with an admin key
and seeded rows, and no answer may be a server error or break the documented schema (status,
content type, headers, body).

SEGAUDIT_FUZZ_EXAMPLES sets the examples per operation and mode (default 15).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine
from app.main import create_app
from app.services import keys
from tests.app.conftest import Api, load_dataset, make_settings, submit

EXAMPLES = int(os.environ.get("SEGAUDIT_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# negative_data_rejection is left out: it counts unknown query parameters as invalid data
# the API should refuse, where HTTP APIs ignore them (schemathesis' own advice for FastAPI).
NEGATIVE_CHECKS = CHECKS
METHODS = ("get", "post", "put", "patch", "delete")


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation of the app's document (read at collection; needs no database), with
    valid data and, where it takes any input, invalid data.
    """
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'openapi.db'}"
        spec = create_app(make_settings(Path(tmp), url)).openapi()
    found = []
    for path, item in spec["paths"].items():
        for method in (m for m in METHODS if m in item):
            found.append((method, path, GenerationMode.POSITIVE))
            if item[method].get("parameters") or item[method].get("requestBody"):
                found.append((method, path, GenerationMode.NEGATIVE))
    return found


OPERATIONS = _operations()


class Fuzzed:
    def __init__(self, app: FastAPI, headers: dict[str, str]) -> None:
        self.schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        self.app = app
        self.headers = headers


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, hc18_module: tuple[list[Path], list[Path]]
) -> Iterator[Fuzzed]:
    """The app on a SQLite file of its own, with a dataset, masks and an audit (queued; no
    worker runs), and an admin key made after 30 others in another project (fuzzed key ids
    are small: revoking one of those is harmless).
    """
    from fastapi.testclient import TestClient

    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'segaudit.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app(make_settings(tmp, url))
    with app.state.sessions() as session:
        other = keys.get_or_create_project(session, "other")
        for i in range(30):
            keys.create_key(session, other, Role.viewer, f"decoy-{i}")
        project = keys.get_or_create_project(session, "alpha")
        _, secret = keys.create_key(session, project, Role.admin, "fuzzer")
    headers = {"X-API-Key": secret}
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, app.state.settings, app.state.sessions, {"annotator": headers})
        loaded = load_dataset(api, *hc18_module)
        submit(api, loaded, epochs=2)
        yield Fuzzed(app, headers)


@pytest.fixture(scope="module")
def hc18_module(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    from tests.conftest import HC18

    names = sorted(p.name for p in (HC18 / "images").iterdir())[::6][:9]
    return [HC18 / "images" / n for n in names], [HC18 / "masks" / n for n in names]


def _run(fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode) -> None:
    operation = fuzzed.schema[path][method.upper()]
    checks = NEGATIVE_CHECKS if mode is GenerationMode.NEGATIVE else CHECKS

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(data: Any) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        case.call_and_validate(headers=fuzzed.headers, checks=checks)

    fuzz()


@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS]
)
def test_operation_answers_as_documented(
    fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode
) -> None:
    _run(fuzzed, method, path, mode)


def test_every_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 25, OPERATIONS


ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_405_names_every_method_of_the_path(fuzzed: Fuzzed) -> None:
    """An undeclared method is a 405 whose Allow header lists every method of the path (a
    dataset's GET and DELETE come from two routers), in the documented error shape.
    """
    from fastapi.testclient import TestClient

    spec = fuzzed.schema.raw_schema
    checked = 0
    with TestClient(fuzzed.app, raise_server_exceptions=False) as client:
        for path, item in spec["paths"].items():
            declared = {m.upper() for m in item if m in METHODS}
            allow = declared | ({"HEAD"} if "GET" in declared else set())
            url = path.replace("{case}", "x")
            for name in ("dataset_id", "set_id", "audit_id", "key_id", "case_id"):
                url = url.replace("{" + name + "}", "1")
            for method in sorted(set(ALL_METHODS) - declared):
                response = client.request(method, url, headers=fuzzed.headers)
                assert response.status_code == 405, (method, url, response.text)
                allowed = {m.strip() for m in response.headers["allow"].split(",")}
                assert allowed == allow, (method, url, allowed)
                body = response.json()
                assert body["code"] == "method_not_allowed" and method in body["detail"]
                checked += 1
    assert checked >= 60, checked


def test_a_body_that_is_not_utf8_is_a_documented_400(fuzzed: Fuzzed) -> None:
    from fastapi.testclient import TestClient

    spec = fuzzed.schema.raw_schema
    with TestClient(fuzzed.app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/datasets",
            content=b'{"name": "\xff\xfe"}',
            headers={**fuzzed.headers, "Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_request"
    documented = spec["paths"]["/v1/datasets"]["post"]["responses"]["400"]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_no_operation_documents_fastapis_validation_error(fuzzed: Fuzzed) -> None:
    spec = fuzzed.schema.raw_schema
    assert "HTTPValidationError" not in str(spec)
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (status, operation)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], operation["operationId"]
