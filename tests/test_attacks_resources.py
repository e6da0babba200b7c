"""Attacks on resources (OWASP API4:2023), the rest of the list: bodies that stop short or never
end, a `limit` past its bound on every route that pages, and a flood of idempotency keys. Each
gets the contract's answer and leaves nothing behind. Both engines; what depends on the
connection goes through uvicorn on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tasktrail.api.app import create_app
from tasktrail.schema import events, idempotency_keys
from tests.conftest import Api, auth, live_server, make_settings, new_user_id

BODY = b'{"title": "never whole", "description": "' + b"x" * 200 + b'"}'


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with live_server(app) as url:
        yield url


def _connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    return socket.create_connection((address.hostname or "", address.port or 80), timeout=10)


def _raw_exchange(base_url: str, request: bytes, *, then_close_writes: bool) -> bytes:
    """Send `request` on a fresh connection, optionally half-close it, and read what comes back
    until the server closes or 5 s pass."""
    answer = b""
    with _connect(base_url) as sock:
        sock.sendall(request)
        if then_close_writes:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.5)
        started = time.monotonic()
        while time.monotonic() - started < 5:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def _head(base_url: str, user_id: str, framing: str) -> bytes:
    return (
        f"POST /api/{user_id}/tasks HTTP/1.1\r\nHost: {urlsplit(base_url).netloc}\r\n"
        f"Authorization: {auth(user_id)['Authorization']}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: cut-short\r\n{framing}\r\n"
    ).encode()


def _left_behind(engine: Engine, user_id: str) -> tuple[int, int]:
    with engine.connect() as conn:
        logged = conn.scalar(select(func.count()).where(events.c.user_id == user_id))
        keys = conn.scalar(select(func.count()).where(idempotency_keys.c.user_id == user_id))
    return int(logged or 0), int(keys or 0)


@pytest.mark.parametrize("cut", [0, 1, len(BODY) // 2, len(BODY) - 1], ids=lambda n: f"{n}B")
def test_a_body_cut_short_by_a_closed_connection_writes_nothing(
    base_url: str, engine: Engine, cut: int
) -> None:
    """Content-Length promises more than comes before the client goes: no task, no event, no
    stored key, and the server goes on serving (no 500 for a request nobody waits for)."""
    user_id = new_user_id()
    framing = f"Content-Length: {len(BODY)}\r\n"
    _raw_exchange(base_url, _head(base_url, user_id, framing) + BODY[:cut], then_close_writes=True)
    assert _left_behind(engine, user_id) == (0, 0)
    retried = httpx2.post(
        f"{base_url}/api/{user_id}/tasks",
        content=BODY,
        headers={
            **auth(user_id),
            "Content-Type": "application/json",
            "Idempotency-Key": "cut-short",
        },
    )
    assert retried.status_code == 201, retried.text  # the key was never taken: a fresh write
    assert "idempotent-replayed" not in retried.headers
    assert _left_behind(engine, user_id) == (1, 1)


@pytest.mark.parametrize("ending", ["mid-chunk", "no-last-chunk"])
def test_a_chunked_body_that_never_ends_writes_nothing(
    base_url: str, engine: Engine, ending: str
) -> None:
    """A chunked body whose sender goes away before the last (empty) chunk: nothing is written."""
    user_id = new_user_id()
    half = BODY[: len(BODY) // 2]
    if ending == "mid-chunk":
        body = b"%x\r\n" % len(BODY) + half
    else:
        body = b"%x\r\n%s\r\n" % (len(half), half)
    framing = "Transfer-Encoding: chunked\r\n"
    _raw_exchange(base_url, _head(base_url, user_id, framing) + body, then_close_writes=True)
    assert _left_behind(engine, user_id) == (0, 0)
    assert httpx2.get(f"{base_url}/healthz").status_code == 200


def test_a_body_that_trickles_past_the_timeout_is_408_and_writes_nothing(
    database_url: str, engine: Engine
) -> None:
    """A body slower than `TASKTRAIL_BODY_TIMEOUT` ends in 408 (test_limits.py), and the write
    it was for never happens, even though every byte but the last arrived."""
    user_id = new_user_id()
    app = create_app(make_settings(database_url, body_timeout=1.0), engine=engine)
    with live_server(app) as url:
        framing = f"Content-Length: {len(BODY)}\r\n"
        answer = b""
        with _connect(url) as sock:
            sock.sendall(_head(url, user_id, framing) + BODY[:-1])  # all but the closing brace
            sock.settimeout(0.5)
            started = time.monotonic()
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 8:
                with contextlib.suppress(TimeoutError):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert _left_behind(engine, user_id) == (0, 0)


def _paged_operations(client: TestClient) -> list[str]:
    """Every GET of the served document that takes a `limit`."""
    document = client.get("/openapi.json").json()
    return [
        path
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method == "get" and any(p["name"] == "limit" for p in operation.get("parameters", []))
    ]


@pytest.mark.parametrize(
    "limit", ["0", "-1", "1001", "99999999999999999999999", "1e9", "Infinity", "NaN", "1_001"]
)
def test_a_limit_out_of_bounds_is_422_on_every_route_that_pages(
    client: TestClient, api: Api, limit: str
) -> None:
    """No route that pages can be asked for more than 1,000 rows at once, or for a limit that
    is no integer, whatever the spelling: 422 naming `limit`, before anything is read."""
    task = api.create(title="one")
    auditor = auth("an-auditor", roles=["auditor"])
    paths = _paged_operations(client)
    assert "/api/{user_id}/tasks" in paths
    assert "/api/audit/events" in paths
    for path in paths:
        url = path.replace("{user_id}", api.user_id).replace("{task_id}", task["id"])
        headers = auditor if path.startswith("/api/audit/") else api.headers
        response = client.get(url, params={"limit": limit}, headers=headers)
        assert response.status_code == 422, (path, limit, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert any(error["loc"] == ["query", "limit"] for error in response.json()["errors"])


FLOOD = 120


def test_a_flood_of_idempotency_keys_is_held_to_the_users_rate_and_keeps_one_key_per_write(
    database_url: str, engine: Engine
) -> None:
    """One user sends keyed creates as fast as it can, each with a new key. With a rate set, what
    passes the rate is 429 with `Retry-After` and the `RateLimit-*` fields, and stores nothing; the
    keys kept are exactly the writes acknowledged (one per 201); another user is not held back."""
    app = create_app(make_settings(database_url, user_rate=20, user_burst=10), engine=engine)
    flooder, bystander = new_user_id(), new_user_id()
    with TestClient(app) as client:
        statuses: list[int] = []
        for number in range(FLOOD):
            response = client.post(
                f"/api/{flooder}/tasks",
                json={"title": f"flood {number}"},
                headers={**auth(flooder), "Idempotency-Key": f"flood-{number}"},
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) > 0
                assert response.headers["ratelimit-remaining"] == "0"
                assert int(response.headers["ratelimit-limit"]) == 10
        created = statuses.count(201)
        assert set(statuses) == {201, 429}
        assert 10 <= created < FLOOD
        assert _left_behind(engine, flooder) == (created, created)
        other = client.post(
            f"/api/{bystander}/tasks",
            json={"title": "mine"},
            headers={**auth(bystander), "Idempotency-Key": "flood-0"},
        )
        assert other.status_code == 201  # a key of the same name, another user: a fresh write
        assert "idempotent-replayed" not in other.headers
