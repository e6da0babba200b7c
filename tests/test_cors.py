"""CORS: allowed origins get the headers, preflights need no token, foreign origins get none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tests.conftest import auth, make_settings

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def cors_client(database_url: str, engine: Engine) -> Iterator[TestClient]:
    settings = make_settings(database_url, cors_origins=f"{ORIGIN}, https://other.example.com/")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def test_a_preflight_from_an_allowed_origin_needs_no_token(
    cors_client: TestClient, user_id: str
) -> None:
    """The browser's OPTIONS carries no Authorization; it is answered with what may be sent."""
    response = cors_client.options(
        f"/api/{user_id}/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "if-match"):
        assert header in allowed
    assert response.headers["x-request-id"]


def test_responses_to_an_allowed_origin_expose_the_contract_headers(
    cors_client: TestClient, user_id: str
) -> None:
    """A script may read ETag, Location, Link, X-Total-Count, X-Request-ID, Idempotent-Replayed."""
    response = cors_client.post(
        f"/api/{user_id}/tasks",
        json={"title": "from the browser"},
        headers={**auth(user_id), "Origin": ORIGIN},
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        part.strip().lower()
        for part in response.headers["access-control-expose-headers"].split(",")
    }
    assert {
        "etag",
        "link",
        "location",
        "x-total-count",
        "x-request-id",
        "idempotent-replayed",
    } <= exposed


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/{user}/tasks", 401), ("/api/{user}/tasks/not-a-uuid", 401), ("/nowhere", 404)],
    ids=["no-token", "no-token-bad-id", "unknown-route"],
)
def test_errors_sent_to_an_allowed_origin_carry_the_cors_headers(
    cors_client: TestClient, user_id: str, path: str, status: int
) -> None:
    """A browser can read the problem details of a failed call, not just see a CORS failure."""
    response = cors_client.get(path.format(user=user_id), headers={"Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_a_second_configured_origin_is_allowed_too(cors_client: TestClient) -> None:
    """TASKTRAIL_CORS_ORIGINS is a comma-separated list; a trailing slash is ignored."""
    response = cors_client.get("/healthz", headers={"Origin": "https://other.example.com"})
    assert response.headers["access-control-allow-origin"] == "https://other.example.com"


def test_a_foreign_origin_gets_no_cors_headers(cors_client: TestClient, user_id: str) -> None:
    """Neither a preflight nor a plain request from an unlisted origin is granted anything."""
    preflight = cors_client.options(
        f"/api/{user_id}/tasks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    plain = cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in plain.headers


def test_without_configured_origins_no_cors_headers_are_sent(
    client: TestClient, user_id: str
) -> None:
    """CORS is off by default: the API is for servers until origins are configured."""
    response = client.get(f"/api/{user_id}/tasks", headers={**auth(user_id), "Origin": ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
