"""Limits on what a client may send: size, nesting, and how slowly."""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tests.conftest import Api, auth, live_server, make_settings


@pytest.mark.parametrize("depth", [1_000, 30_000], ids=["deep", "very-deep"])
def test_deeply_nested_json_is_422_not_a_crash(api: Api, depth: int) -> None:
    """Nesting past the parser's limit is refused as invalid JSON, and nothing is created."""
    raw = '{"title": "x", "description": ' + "[" * depth + "]" * depth + "}"
    response = api.request(
        "POST", content=raw.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert api.request("GET").headers["x-total-count"] == "0"


def test_a_client_that_trickles_its_body_is_cut_off_with_408(
    database_url: str, engine: Engine, user_id: str
) -> None:
    """A body sent a byte at a time, slower than the body timeout, ends in 408, not a hang."""
    app = create_app(make_settings(database_url, body_timeout=1.0), engine=engine)
    with live_server(app) as base_url:
        address = urlsplit(base_url)
        head = (
            f"POST /api/{user_id}/tasks HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: {auth(user_id)['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(head.encode())
            started = time.monotonic()
            answer = b""
            sock.settimeout(0.25)
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 8:
                with contextlib.suppress(OSError):  # the server may close once it has answered
                    sock.sendall(b" ")
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"application/problem+json" in answer
