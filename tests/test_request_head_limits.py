"""Each request's head is bounded in size and in time, by the server's protocol (uvicorn's, with
api/http/bounded_http.py): raw sockets against a real server on loopback. Only the heads count: a
body, or many requests in one write, are not a head over the limit. Heads behind a live stream:
tests/test_request_heads_behind_a_stream.py."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi import FastAPI

from tasktrail.api.http.bounded_http import BoundedHttpToolsProtocol
from tasktrail.settings import Settings
from tests.conftest import live_server, make_token, new_user_id


class Strict(BoundedHttpToolsProtocol):
    max_head_bytes = 16 * 1024
    head_timeout = 0.5


class AsServed(BoundedHttpToolsProtocol):
    """The bounds of `tasktrail serve` with nothing configured: 64 KiB, as the API's bodies."""

    max_head_bytes = Settings.model_fields["header_bytes"].default
    head_timeout = Settings.model_fields["header_timeout"].default


@pytest.fixture(scope="module")
def port(app: FastAPI) -> Iterator[int]:
    with live_server(app, http=Strict) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served_port(app: FastAPI) -> Iterator[int]:
    with live_server(app, http=AsServed) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


class Responses:
    """The responses of one connection, in order (each with a Content-Length)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection; unread: {self.buffer[:200]!r}"
        self.buffer += chunk

    def next(self) -> tuple[int, dict[bytes, bytes], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = int(headers[b"content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(b" ")[1]), headers, body


def create_request(user_id: str, body_size: int) -> bytes:
    """A task creation whose JSON body is padded with spaces to `body_size` bytes."""
    body = b'{"title": "a task with a large body"}'
    body += b" " * (body_size - len(body))
    return (
        b"POST /api/%s/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (user_id.encode(), make_token(user_id).encode(), len(body), body)
    )


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


@pytest.mark.parametrize("body_size", [65_400, 65_536])
def test_a_body_up_to_64_kib_sent_with_its_head_in_one_write_is_answered(
    served_port: int, body_size: int
) -> None:
    """The head is ~400 bytes: with the body, the write is over the 64 KiB the head may have."""
    with socket.create_connection(("127.0.0.1", served_port)) as sock:
        sock.sendall(create_request(new_user_id(), body_size))
        status, _, body = Responses(sock).next()
        assert status == 201, body


@pytest.mark.parametrize("body_size", [65_537, 300_000])
def test_a_body_over_64_kib_in_one_write_is_413_and_the_request_after_it_is_answered(
    served_port: int, body_size: int
) -> None:
    """The app's 413, not a 431; 300 kB spans reads of the server (256 KiB each), and the
    request pipelined after the body is read as a request, not as more of a head."""
    with socket.create_connection(("127.0.0.1", served_port)) as sock:
        sock.sendall(
            create_request(new_user_id(), body_size) + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        responses = Responses(sock)
        status, _, body = responses.next()
        assert status == 413, body
        assert responses.next()[0] == 200


def test_450_pipelined_requests_are_all_answered_in_order(served_port: int) -> None:
    """~72 kB of heads, each of them ~160 bytes: none is over the limit. Two writes, the first
    ending inside a blank line: the end of that head straddles the server's reads."""
    requests = [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pipelining-test/1.0\r\n"
        b"Accept: application/json\r\nX-Request-ID: pipelined-%03d\r\nX-Pad: %s\r\n\r\n"
        % (number, b"p" * 30)
        for number in range(450)
    ]
    assert all(150 <= len(request) <= 170 for request in requests)
    with socket.create_connection(("127.0.0.1", served_port)) as sock:
        stream = b"".join(requests)
        cut = len(b"".join(requests[:440])) - 1
        sock.sendall(stream[:cut])
        time.sleep(0.2)
        sock.sendall(stream[cut:])
        responses = Responses(sock)
        for number in range(450):
            status, headers, body = responses.next()
            assert status == 200, (number, body)
            assert headers[b"x-request-id"] == b"pipelined-%03d" % number


def test_a_head_over_the_limit_behind_an_unanswered_request_closes_without_a_431(
    port: int,
) -> None:
    """A 431 written before the first request's answer would read as that answer."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            create_request(new_user_id(), 100)
            + b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: "
            + b"a" * 20_000
            + b"\r\n\r\n"
        )
        try:
            raw = read_all(sock)
        except ConnectionResetError:
            return  # closed with our bytes unread
        assert b" 431 " not in raw, raw[:300]
