"""The served OpenAPI document is valid and says what the contract says."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

CONTRACT_ROUTES = [
    ("post", "/api/{user_id}/tasks"),
    ("get", "/api/{user_id}/tasks"),
    ("get", "/api/{user_id}/tasks/{task_id}"),
    ("put", "/api/{user_id}/tasks/{task_id}"),
    ("patch", "/api/{user_id}/tasks/{task_id}"),
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"),
    ("delete", "/api/{user_id}/tasks/{task_id}"),
    ("post", "/api/{user_id}/tasks/{task_id}/restore"),
    ("get", "/api/{user_id}/tasks/{task_id}/events"),
    ("get", "/api/{user_id}/events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
]
WRITES = [route for route in CONTRACT_ROUTES if route[0] in ("post", "put", "patch", "delete")]
API_ROUTES = [route for route in CONTRACT_ROUTES if route[1].startswith("/api/")]


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]
    return found


def parameter_names(op: dict[str, Any], where: str) -> set[str]:
    return {parameter["name"] for parameter in op.get("parameters", []) if parameter["in"] == where}


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    """openapi-spec-validator accepts the document as it is served."""
    validate(document)


@pytest.mark.parametrize(
    ("method", "path"), CONTRACT_ROUTES, ids=[f"{m} {p}" for m, p in CONTRACT_ROUTES]
)
def test_every_route_of_the_contract_is_documented(
    document: dict[str, Any], method: str, path: str
) -> None:
    """Each route of api.md is in the document, /healthz, /readyz and /metrics included."""
    assert method in document["paths"][path]


def test_the_bearer_scheme_is_declared_and_required_on_every_api_route(
    document: dict[str, Any],
) -> None:
    """A JWT bearer scheme, and every /api route requires it."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for method, path in API_ROUTES:
        assert operation(document, method, path)["security"] == [{"bearer": []}]


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_api_routes_document_their_problems_as_problem_json(
    document: dict[str, Any], method: str, path: str
) -> None:
    """401 (with WWW-Authenticate), 403, 422, 500 and 503 (with Retry-After) are problem+json."""
    responses = operation(document, method, path)["responses"]
    for status in ("401", "403", "422", "500", "503"):
        assert "application/problem+json" in responses[status]["content"], status
        assert "X-Request-ID" in responses[status]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_write_routes_take_an_idempotency_key_and_document_replays(
    document: dict[str, Any], method: str, path: str
) -> None:
    """Every write takes Idempotency-Key and says a replay is marked; 409 is documented."""
    op = operation(document, method, path)
    assert "Idempotency-Key" in parameter_names(op, "header")
    success = next(status for status in op["responses"] if status.startswith("2"))
    assert "Idempotent-Replayed" in op["responses"][success]["headers"]
    assert "409" in op["responses"]


def test_preconditions_and_single_task_headers_are_documented(document: dict[str, Any]) -> None:
    """If-Match on writes to a task, If-None-Match and 304 on read, ETag and Location headers."""
    task = "/api/{user_id}/tasks/{task_id}"
    for method in ("put", "patch", "delete"):
        op = operation(document, method, task)
        assert "If-Match" in parameter_names(op, "header")
        assert "412" in op["responses"]
    read = operation(document, "get", task)
    assert "If-None-Match" in parameter_names(read, "header")
    assert "ETag" in read["responses"]["304"]["headers"]
    assert "ETag" in read["responses"]["200"]["headers"]
    created = operation(document, "post", "/api/{user_id}/tasks")["responses"]["201"]["headers"]
    assert {"ETag", "Location"} <= set(created)


def test_the_list_documents_its_query_language_and_paging_headers(
    document: dict[str, Any],
) -> None:
    """Every list parameter but as_of, and the Link and X-Total-Count headers."""
    op = operation(document, "get", "/api/{user_id}/tasks")
    expected = {"status", "sort", "q", "tag", "due_before", "due_after", "limit", "cursor"}
    assert expected <= parameter_names(op, "query")
    assert {"Link", "X-Total-Count"} <= set(op["responses"]["200"]["headers"])
    feed = operation(document, "get", "/api/{user_id}/events")
    assert {"after", "limit"} <= parameter_names(feed, "query")
    assert "Link" in feed["responses"]["200"]["headers"]


def test_request_bodies_are_documented_with_their_media_types(document: dict[str, Any]) -> None:
    """Create, PUT and PATCH bodies are JSON; PATCH also merge-patch+json; unknown fields refused."""
    create = operation(document, "post", "/api/{user_id}/tasks")["requestBody"]["content"]
    assert create["application/json"]["schema"]["additionalProperties"] is False
    patch = operation(document, "patch", "/api/{user_id}/tasks/{task_id}")["requestBody"]
    assert {"application/json", "application/merge-patch+json"} <= set(patch["content"])


def _parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found = [p for p in operation(document, method, path)["parameters"] if p["name"] == name]
    assert len(found) == 1, name
    schema: dict[str, Any] = found[0]["schema"]
    return schema


TIMESTAMP_PARAMETERS = [
    ("get", "/api/{user_id}/tasks", "due_before"),
    ("get", "/api/{user_id}/tasks", "due_after"),
    ("get", "/api/{user_id}/tasks", "as_of"),
    ("get", "/api/{user_id}/tasks/{task_id}", "as_of"),
    ("get", "/api/audit/events", "since"),
    ("get", "/api/audit/events", "until"),
]


@pytest.mark.parametrize(("method", "path", "name"), TIMESTAMP_PARAMETERS)
def test_a_timestamp_parameter_is_declared_with_its_format_and_pattern(
    document: dict[str, Any], method: str, path: str, name: str
) -> None:
    """A timestamp parameter says it is an RFC 3339 date-time with an offset, not any text."""
    schema = _parameter(document, method, path, name)
    assert schema["type"] == "string"
    assert schema["format"] == "date-time"
    assert re.fullmatch(schema["pattern"], "2026-11-24T10:15:00.123456+02:00")
    assert not re.fullmatch(schema["pattern"], "2026-11-24T10:15:00")
    assert not re.fullmatch(schema["pattern"], "2026-11-24T10:15:00.1234567Z")


def test_no_parameter_is_declared_nullable(document: dict[str, Any]) -> None:
    """Query strings and headers hold text: an optional parameter is absent, never `null`."""
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for parameter in op.get("parameters", []):
                assert "anyOf" not in parameter["schema"], (method, path, parameter["name"])


def test_the_list_filters_declare_what_the_service_refuses(document: dict[str, Any]) -> None:
    """`q` and each `tag` say what is a 422: NUL, an empty or over-long tag, over 50 tags."""
    q = _parameter(document, "get", "/api/{user_id}/tasks", "q")
    assert q["maxLength"] == 200
    assert not re.fullmatch(q["pattern"], "a\x00b")
    tag = _parameter(document, "get", "/api/{user_id}/tasks", "tag")
    assert tag["type"] == "array"
    assert tag["maxItems"] == 50
    assert tag["items"]["minLength"] == 1
    assert tag["items"]["maxLength"] == 50


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("a", True),
        ("  a  ", True),
        ("   ", False),
        ("", False),
        ("\x1c\x85a\u3000", True),
        ("a" * 200, True),
        (" " + "a" * 200 + "\t", True),
        ("a" * 201, False),
        ("a\x00", False),
    ],
)
def test_the_body_declares_the_title_rule(
    document: dict[str, Any], text: str, *, valid: bool
) -> None:
    """The title's pattern is the validator's rule: 1 to 200 characters after trimming, no NUL."""
    body = operation(document, "post", "/api/{user_id}/tasks")["requestBody"]
    pattern = body["content"]["application/json"]["schema"]["properties"]["title"]["pattern"]
    assert bool(re.fullmatch(pattern, text)) is valid


def test_the_merge_patch_title_and_completed_are_not_nullable(document: dict[str, Any]) -> None:
    """A merge patch may clear the optional fields with null, not title or completed (422)."""
    body = operation(document, "patch", "/api/{user_id}/tasks/{task_id}")["requestBody"]
    properties = body["content"]["application/merge-patch+json"]["schema"]["properties"]
    assert properties["title"]["type"] == "string"
    assert properties["completed"]["type"] == "boolean"
    assert "anyOf" not in properties["title"]
    assert "anyOf" not in properties["completed"]
    assert {"type": "null"} in properties["description"]["anyOf"]
