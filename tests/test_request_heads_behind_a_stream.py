"""Request heads pipelined behind a live event stream are bounded too (api/http/bounded_http.py).

The stream's response never completes, so whatever the client sends after it on the same
connection is read while that response is being written. A real `tasktrail serve` on loopback,
its memory read from /proc: a head that never ends, a head that stops coming, and a flood of
small requests behind the stream each close the connection (and so end the stream) instead of
being kept; no answer is written into the middle of the stream.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import SECRET, make_token, new_user_id
from tests.processes import served

HEAD_TIMEOUT = 1.0
MiB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, int]]:
    """`tasktrail serve` with the default head limit (64 KiB) and a 1 s head timeout: its port
    and its pid (one process: it serves the requests itself)."""
    with served(
        tmp_path_factory.mktemp("serve"),
        TASKTRAIL_DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=SECRET,
        TASKTRAIL_HEADER_TIMEOUT=str(HEAD_TIMEOUT),
    ) as (base_url, _, pid):
        yield int(base_url.rsplit(":", 1)[1]), pid


@contextlib.contextmanager
def live_stream(port: int) -> Iterator[tuple[socket.socket, bytes]]:
    """A socket whose live feed has started (its first message read); what it read so far."""
    user_id = new_user_id()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            b"GET /api/%s/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
            b"Authorization: Bearer %s\r\n\r\n" % (user_id.encode(), make_token(user_id).encode())
        )
        received = b""
        while b"retry: " not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 "), received
        yield sock, received


def rest_until_closed(sock: socket.socket, seconds: float) -> bytes:
    """What the server writes until it closes the connection, within `seconds`."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {seconds:g} s") from None
    return received


def streams_open(port: int) -> float:
    text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(r"^tasktrail_sse_streams_open(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    assert found, text[:500]
    return float(found.group(1))


def no_stream_left(port: int) -> None:
    """The server ended the stream when it closed the connection (not only the socket)."""
    deadline = time.monotonic() + 10
    while streams_open(port) != 0:
        assert time.monotonic() < deadline, "a stream outlived its connection"
        time.sleep(0.1)


def send_until_closed(sock: socket.socket, data: bytes, total: int, pid: int) -> tuple[int, int]:
    """Send `data` again and again, up to `total` bytes, until the server closes the
    connection; the bytes sent and the server's peak resident memory (KiB) while sending."""
    sock.settimeout(10)
    sent = 0
    peak = rss_kib(pid)
    try:
        while sent < total:
            sock.sendall(data)
            sent += len(data)
            if sent % MiB < len(data):
                peak = max(peak, rss_kib(pid))
    except (BrokenPipeError, ConnectionResetError):
        pass
    except TimeoutError:
        raise AssertionError(f"the server stopped reading after {sent} bytes") from None
    time.sleep(0.5)  # what it read last is parsed
    return sent, max(peak, rss_kib(pid))


def test_a_header_that_never_ends_behind_a_stream_closes_the_connection(
    server: tuple[int, int],
) -> None:
    """32 MiB of one header line behind the stream: the server reads 64 KiB of it and closes
    the connection; it held the whole line before (httptools keeps an unfinished header value)."""
    port, pid = server
    with live_stream(port) as (sock, _):
        baseline = rss_kib(pid)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        sent, peak = send_until_closed(sock, b"a" * 65536, 32 * MiB, pid)
        assert peak - baseline < 8 * 1024, f"grew {(peak - baseline) / 1024:.1f} MiB"
        rest = rest_until_closed(sock, 10)
        assert b"HTTP/1.1 " not in rest, rest[:300]  # no answer inside the stream's body
        assert sent < 32 * MiB
    no_stream_left(port)


def test_a_head_that_stops_coming_behind_a_stream_is_closed_after_the_head_timeout(
    server: tuple[int, int],
) -> None:
    port, _ = server
    with live_stream(port) as (sock, _):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        rest = rest_until_closed(sock, 10 * HEAD_TIMEOUT)
        assert time.monotonic() - started >= HEAD_TIMEOUT * 0.9
        assert b"HTTP/1.1 " not in rest, rest[:300]
    no_stream_left(port)


def test_a_flood_of_requests_queued_behind_a_stream_closes_the_connection(
    server: tuple[int, int],
) -> None:
    """Requests parsed behind the stream wait in uvicorn's pipeline (~2.5 KiB each): one read
    of the server (up to 256 KiB) brought thousands of them, all kept, with the connection left
    open. More than 1024 close it."""
    port, _ = server
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    with live_stream(port) as (sock, _):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request * 3600)  # 126 kB: 64 KiB, 1800 requests, in the first read
        rest = rest_until_closed(sock, 10)
        assert b"HTTP/1.1 " not in rest, rest[:300]
    no_stream_left(port)
