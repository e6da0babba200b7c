"""Helpers of the list query tests: the titles of a page, and a 422 at one query parameter."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


def titles(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [task["title"] for task in response.json()]


def assert_query_problem(response: Any, name: str) -> None:
    """A 422 problem whose errors all point at the query parameter `name`."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["errors"]
    assert all(error["loc"] == ["query", name] for error in body["errors"]), body["errors"]


def words(text: str) -> list[str]:
    return text.split()
