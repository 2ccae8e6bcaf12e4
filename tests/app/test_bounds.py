"""Every integer a request carries is range-checked: ids past PostgreSQL's ``integer`` and huge
offsets are a 422 that names the parameter, an id in range that names nothing a 404; never a
500. The operations are read from the app's own OpenAPI document, so a new route is covered
as soon as it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.api.params import MAX_ID
from tests.app.conftest import Api, load_dataset, submit

HUGE = [MAX_ID + 1, 2**63, 10**30]
METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _is_int(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(spec, schema)
    options = schema.get("anyOf", [schema])
    return any(_resolve(spec, s).get("type") == "integer" for s in options)


def operations(api: Api) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    spec = api.client.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                found.append((method, path, item[method], spec))
    return found


def _json_body(spec: dict[str, Any], op: dict[str, Any], big: int | None) -> dict[str, Any] | None:
    """A body for a JSON operation: ints set to ``big`` (or 1), the rest minimal and valid."""
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = _resolve(spec, content["application/json"]["schema"])
    body: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(spec, prop)
        if _is_int(spec, prop):
            body[name] = big if big is not None else 1
        elif name in schema.get("required", []):
            if "enum" in prop:
                body[name] = prop["enum"][0]
            elif prop.get("type") == "string":
                body[name] = prop.get("examples", ["x"])[0]
    return body


@pytest.fixture
def ids(api: Api, hc18: tuple[list[Path], list[Path]]) -> dict[str, Any]:
    """Real rows for every path parameter: a dataset, its set, an audit, a case and a key."""
    loaded = load_dataset(api, *hc18)
    audit = submit(api, loaded, epochs=2)
    case = next(iter(loaded.case_ids))
    key = api.get("/v1/keys", role="admin").json()[0]["id"]
    return {
        "dataset_id": loaded.dataset_id,
        "set_id": loaded.set_id,
        "audit_id": audit["id"],
        "case_id": loaded.case_ids[case],
        "key_id": key,
        "case": case,
    }


def _url(
    path: str, op: dict[str, Any], ids: dict[str, Any], huge: str | None = None, big: int = 0
) -> str:
    for param in op.get("parameters", []):
        if param["in"] != "path":
            continue
        name = param["name"]
        value = big if name == huge else ids.get(name, 1)  # 1: a row of a newer route
        path = path.replace("{" + name + "}", str(value))
    return path


def _call(api: Api, method: str, url: str, body: dict[str, Any] | None) -> Any:
    kwargs: dict[str, Any] = {"headers": api.headers["admin"]}
    if body is not None:
        kwargs["json"] = body
    return api.client.request(method.upper(), url, **kwargs)


def _int_params(op: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    return [
        p["name"]
        for p in op.get("parameters", [])
        if p["in"] == where and _is_int(spec, p["schema"])
    ]


def test_every_id_past_the_database_range_is_a_422_naming_it(api: Api, ids: dict[str, Any]) -> None:
    checked = 0
    for method, path, op, spec in operations(api):
        for name in _int_params(op, spec, "path"):
            for big in HUGE:
                url = _url(path, op, ids, name, big)
                response = _call(api, method, url, _json_body(spec, op, None))
                assert response.status_code == 422, (method, url, response.text)
                body = response.json()
                assert body["code"] == "invalid_request" and name in body["detail"], body
                checked += 1
        for name in _int_params(op, spec, "query"):
            for big in HUGE:
                url = _url(path, op, ids)
                response = api.client.request(
                    method.upper(), url, params={name: big}, headers=api.headers["admin"]
                )
                assert response.status_code == 422, (method, url, name, response.text)
                assert name in response.json()["detail"]
                checked += 1
        body = _json_body(spec, op, HUGE[0])
        if body and any(isinstance(v, int) and v > MAX_ID for v in body.values()):
            response = _call(api, method, _url(path, op, ids), body)
            assert response.status_code == 422, (method, path, body, response.text)
            checked += 1
    # Ids in 5 resources' paths, offsets, limits and the audit body's ids: the walk found them.
    assert checked >= 60, checked


def test_ids_in_range_that_name_nothing_are_404(api: Api, ids: dict[str, Any]) -> None:
    checked = 0
    for method, path, op, spec in operations(api):
        for name in _int_params(op, spec, "path"):
            url = _url(path, op, ids, name, MAX_ID)
            response = _call(api, method, url, _json_body(spec, op, None))
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["code"] == "not_found"
            checked += 1
    assert checked >= 20, checked


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "1e400", "nan"])
def test_ids_that_are_no_row_id_are_422(api: Api, value: str) -> None:
    for url in (f"/v1/audits/{value}", f"/v1/datasets/{value}", f"/v1/cases/{value}/history"):
        response = api.get(url)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("offset", [str(MAX_ID + 1), "9223372036854775808", "-1"])
def test_huge_offsets_are_refused(api: Api, offset: str) -> None:
    for url in ("/v1/datasets", "/v1/audits"):
        response = api.get(url, params={"offset": offset})
        assert response.status_code == 422, response.text
        assert "offset" in response.json()["detail"]


def test_the_largest_offset_allowed_answers_an_empty_page(api: Api) -> None:
    for url in ("/v1/datasets", "/v1/audits"):
        response = api.get(url, params={"offset": MAX_ID, "limit": 500})
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", 10**30), ("epochs", MAX_ID + 1), ("batch_size", -(2**63)), ("channels", [2**40, 8])],
)
def test_audit_parameters_past_the_int_range_are_422(
    api: Api, ids: dict[str, Any], field: str, value: Any
) -> None:
    body = {"dataset_id": ids["dataset_id"], "annotation_set_id": ids["set_id"]}
    response = api.post("/v1/audits", json={**body, "parameters": {field: value}})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_parameters"
    assert field in response.json()["detail"] and "out of range" in response.json()["detail"]


def _unbounded(
    spec: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]
) -> list[str]:
    """The integers under ``schema`` (refs followed) that have no documented maximum."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _unbounded(spec, _resolve(spec, schema), where, seen | {name})
    found = [where] if schema.get("type") == "integer" and "maximum" not in schema else []
    for key, child in schema.get("properties", {}).items():
        found += _unbounded(spec, child, f"{where}.{key}", seen)
    for child in schema.get("anyOf", []) + schema.get("allOf", []):
        found += _unbounded(spec, child, where, seen)
    if isinstance(schema.get("items"), dict):
        found += _unbounded(spec, schema["items"], f"{where}[]", seen)
    return found


def test_every_integer_a_request_may_carry_has_a_documented_range(api: Api) -> None:
    unbounded = []
    for method, path, op, spec in operations(api):
        for param in op.get("parameters", []):
            unbounded += _unbounded(
                spec, param["schema"], f"{method} {path} {param['name']}", set()
            )
        for content in op.get("requestBody", {}).get("content", {}).values():
            unbounded += _unbounded(spec, content["schema"], f"{method} {path} body", set())
    assert unbounded == []
