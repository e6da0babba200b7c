"""Who may call the audit API's verify route, and what it refuses: 401 without a token, 403
without the auditor role (even on one's own log), 422 for a malformed expected_head, an unknown
query parameter, or a path that is no user id. Tampered logs are in test_tamper_detection.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.tamper_helpers import verify

PROBLEM_JSON = "application/problem+json"


# --- who may verify, and with what --------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= set(body)
    assert ("errors" in body) == (status == 422)
    return body


def test_verify_without_a_token_is_401(client: TestClient, user_id: str) -> None:
    """No Authorization header: 401 with the bearer challenge."""
    response = verify(client, user_id, headers={})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "claims",
    [{}, {"role": "admin"}, {"roles": ["reader", "writer"]}],
    ids=["no-role", "other-role", "other-roles-list"],
)
def test_verify_is_403_for_a_non_auditor_even_on_their_own_log(
    client: TestClient, user_id: str, claims: dict[str, Any]
) -> None:
    """A user's own valid token, without the auditor role, does not open the audit API."""
    assert_problem(verify(client, user_id, headers=auth(user_id, **claims)), 403)


MALFORMED_HEADS = {
    "not-seq-hash": "abc",
    "hash-not-hex": "3:xyz",
    "seq-zero": "0:" + "0" * 64,
    "missing-hash": "3:",
    "missing-colon": "3",
    "missing-seq": ":" + "a" * 64,
    "negative-seq": "-1:" + "a" * 64,
    "short-hash": "3:" + "a" * 63,
    "non-ascii-digit-seq": "\u0663:" + "a" * 64,  # ARABIC-INDIC DIGIT THREE, not a decimal seq
}


@pytest.mark.parametrize("expected_head", MALFORMED_HEADS.values(), ids=MALFORMED_HEADS.keys())
def test_a_malformed_expected_head_is_422(
    client: TestClient, user_id: str, expected_head: str
) -> None:
    """expected_head must be SEQ:HASH with a positive seq and a SHA-256 hex hash."""
    body = assert_problem(verify(client, user_id, {"expected_head": expected_head}), 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "expected_head"]]


def test_an_unknown_query_parameter_on_verify_is_422(client: TestClient, user_id: str) -> None:
    """api.md: an unknown query parameter is 422, here as on every route (a typo is not silence)."""
    response = verify(client, user_id, {"expected_hed": f"1:{'a' * 64}"})
    body = assert_problem(response, 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "expected_hed"]]


@pytest.mark.parametrize("user_id", ["a%00b", "x" * 129, "audit%0A"])
def test_verify_of_a_path_that_is_no_user_id_is_422(client: TestClient, user_id: str) -> None:
    """A NUL byte in the path was a 500 on PostgreSQL (its text cannot hold one)."""
    body = assert_problem(verify(client, user_id), 422)
    assert [error["loc"] for error in body["errors"]] == [["path", "user_id"]]
