"""Each request's head is bounded in size and in time, by the server's protocol (uvicorn's, with
api/bounded_http.py): raw sockets against a real server on loopback."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi import FastAPI

from tasktrail.api.bounded_http import BoundedHttpToolsProtocol
from tests.conftest import live_server


class Strict(BoundedHttpToolsProtocol):
    max_head_bytes = 16 * 1024
    head_timeout = 0.5


@pytest.fixture(scope="module")
def port(app: FastAPI) -> Iterator[int]:
    with live_server(app, http=Strict) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (it must, within the test's time)."""
    sock.settimeout(10)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def problem_of(raw: bytes, status: int) -> dict[str, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert b"content-type: application/problem+json" in head
    problem: dict[str, object] = orjson.loads(body)
    assert problem["status"] == status
    return problem


def test_a_head_over_the_limit_is_431_and_the_connection_closes(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        problem_of(read_all(sock), 431)


def test_an_8_mb_header_is_refused_after_the_limit_not_read_whole(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        # The server may close its end once it has seen enough, before we finish sending.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + b"a" * 8_000_000 + b"\r\n\r\n")
        try:
            raw = read_all(sock)
        except ConnectionResetError:
            return  # closed with our bytes unread: refused all the same
        problem_of(raw, 431)


def test_a_head_that_trickles_is_408_and_the_connection_closes(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.2)
        sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming, the head never ends
        problem_of(read_all(sock), 408)


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        problem_of(read_all(sock), 408)


def test_a_keep_alive_connection_idle_between_requests_is_not_cut(port: int) -> None:
    """The deadline runs from a request's first byte: an idle keep-alive connection is left to
    uvicorn's keep-alive timeout (5 s), longer than the head's 0.5 s here."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            response = b""
            while b'"ok"' not in response:
                response += sock.recv(65536)
            assert response.startswith(b"HTTP/1.1 200 ")
            time.sleep(1.0)
