"""Helpers of the input-rule tests: problem bodies, their error locations, raw and padded POSTs."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.conftest import Api

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
LIMIT = 64 * 1024


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status, with `errors` exactly on 422."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_FIELDS | ({"errors"} if status == 422 else set())
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if status == 422:
        assert body["errors"], "a 422 names at least one error"
        for error in body["errors"]:
            assert set(error) == {"loc", "msg", "type"}
            assert isinstance(error["loc"], list)
    return body


def error_locs(response: httpx2.Response) -> list[list[Any]]:
    body = assert_problem(response, 422)
    return [error["loc"] for error in body["errors"]]


def post_raw(api: Api, content: bytes, content_type: str = "application/json") -> Any:
    return api.request("POST", content=content, headers={"Content-Type": content_type})


def padded(size: int) -> bytes:
    """A valid create body of exactly `size` bytes (JSON whitespace at the end)."""
    body = b'{"title": "t"}'
    return body + b" " * (size - len(body))
