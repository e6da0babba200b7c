"""Helpers of the task route tests: the task writes, problem bodies, a task and its history."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest

from tests.conftest import Api

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
WRITES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "put": ("PUT", "", {"title": "new"}),
    "patch": ("PATCH", "", {"title": "new"}),
    "toggle": ("PATCH", "/complete", None),
    "complete": ("PATCH", "/complete", {"completed": True}),
    "delete": ("DELETE", "", None),
}


def over_writes(*names: str) -> pytest.MarkDecorator:
    """Parametrize a test over some of the task writes: (method, suffix, body)."""
    return pytest.mark.parametrize(
        ("method", "suffix", "body"), [WRITES[name] for name in names], ids=list(names)
    )


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status, without `errors` unless 422."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    expected = PROBLEM_FIELDS | ({"errors"} if status == 422 else set())
    assert set(body) == expected
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def types_of(api: Api, task_id: str) -> list[str]:
    return [event["type"] for event in api.history(task_id)]


def current(api: Api, task_id: str) -> dict[str, Any]:
    response = api.get(task_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
