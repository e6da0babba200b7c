"""Chunked bodies and bodies left unread, at the server's protocol (api/http/bounded_http.py): a
chunked body's framing and trailer fields are bounded like a head, what follows a chunked body in
the same write is counted by its own bytes, and the rest of a request already answered has a
head's time to arrive. Raw sockets against a real server on loopback (16 KiB, 0.5 s)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from tests.conftest import live_server, make_token, new_user_id
from tests.test_request_head_limits import Responses, Strict, read_all

LIMIT = Strict.max_head_bytes
assert LIMIT is not None


@pytest.fixture(scope="module")
def port(app: FastAPI) -> Iterator[int]:
    with live_server(app, http=Strict) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def chunked_create(user_id: str, *, end: bool = True) -> bytes:
    """A task creation with a chunked JSON body; without its last chunk when `end` is False."""
    body = b'{"title": "chunked"}'
    request = (
        b"POST /api/%s/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n"
        % (user_id.encode(), make_token(user_id).encode(), len(body), body)
    )
    return request + (b"0\r\n\r\n" if end else b"")


def test_a_trailer_line_that_never_ends_is_refused_at_the_limit(port: int) -> None:
    """A trailer field is a header field after the body: one that never ends was read into the
    parser for as long as it came (a 64 MiB one grew the process by 59 MiB)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(chunked_create(new_user_id(), end=False) + b"0\r\nX-Trailer: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 8 * 1024 * 1024:
                sock.sendall(b"t" * 65_536)
                sent += 65_536
        # The socket buffers on both sides hold a few MiB at most; the server cut us off.
        assert sent < 8 * 1024 * 1024, "the server read 8 MiB of one trailer line"


def test_a_head_over_the_limit_after_a_chunked_body_in_the_same_write_is_refused(
    port: int,
) -> None:
    """The head after the body is counted from its first byte, not let through because the
    write began inside a body (a 60 kB head got to the app under an 8 KiB limit). The POST's
    answer is still owed when the head is refused, so the connection closes without a 431."""
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * (4 * LIMIT) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(chunked_create(new_user_id()) + big)
        try:
            raw = read_all(sock)
        except ConnectionResetError:
            return  # closed with our bytes unread: refused
        assert b"HTTP/1.1 200 " not in raw, "the head over the limit was answered"


def test_requests_after_a_chunked_body_are_counted_by_their_own_bytes(port: int) -> None:
    """A chunked body's end, a request whose body is larger than the head limit, and half of
    the next head, in one write: the body is not counted as a head, and all three are answered."""
    user_id = new_user_id()
    padded = b'{"title": "after a chunked body"}'.ljust(LIMIT + 4_000)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(chunked_create(user_id, end=False))
        time.sleep(0.1)  # the body's end arrives in a read of its own, with what follows
        sock.sendall(
            b"0\r\n\r\n" + b"POST /api/%s/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (user_id.encode(), make_token(user_id).encode(), len(padded), padded)
            + b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
        )
        time.sleep(0.1)
        sock.sendall(b"\r\n")
        responses = Responses(sock)
        assert [responses.next()[0] for _ in range(3)] == [201, 201, 200]


def test_the_unread_rest_of_an_answered_request_must_arrive_in_time(port: int) -> None:
    """A request answered before its body was read (here a 401): the client that goes on
    trickling that body, a byte at a time, is cut off after the head's time, not kept for
    ever (each byte used to put off the keep-alive timeout)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /api/alice/tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000\r\n\r\n{"
        )
        status, _, _ = Responses(sock).next()
        assert status == 401
        answered = time.monotonic()
        sock.settimeout(0.05)
        closed = None
        while time.monotonic() - answered < 5 and closed is None:
            try:
                sock.sendall(b" ")
                if sock.recv(1024) == b"":
                    closed = time.monotonic()
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic()
        assert closed is not None, "the connection was still open 5 s after the answer"
        assert closed - answered < 3
