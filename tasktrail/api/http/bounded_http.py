"""uvicorn's HTTP protocol with a bound on every request head of a connection: its size and time.

uvicorn (with httptools) reads a request's line and headers for as long as they keep coming
and however large they are: an 8 MB `Authorization` header was read, parsed and handed to the
app before any check, and a connection that sends half a head, or nothing at all, was kept
open until the process ran out of file descriptors. This protocol counts the bytes of each
head, from its first byte to the blank line that ends it (never a body's), and refuses one
over `TASKTRAIL_HEADER_BYTES` (431) before the parser is given the byte past the limit, and
one that is not complete `TASKTRAIL_HEADER_TIMEOUT` seconds after the connection opened, or
after its first byte arrived (408); then it closes the connection. Both answers are problem
details, written directly: no app runs for them.

The bound holds for every head of the connection, pipelined ones too: also behind a response
that is still being written, such as a live event stream, which never completes (one client
once pushed 105 MB of a single header line behind its stream). An answer written then would
land in the middle of that response's body, so the connection is closed instead, which ends
the stream. Requests parsed behind an unfinished response wait in uvicorn's pipeline, each with
its scope and cycle (~2.5 KiB); each response that completes lets the server read again, and one
read (256 KiB) brought thousands of small ones: they grew without end (72 MiB in 15 s of one
client). Past `max_queued_requests` of them, or once their heads add up to more than
`QUEUED_HEADS` heads at the limit, the connection is closed too.

How a read is cut: outside a body, the bytes up to the first blank line (`\\r\\n\\r\\n`, which may
straddle reads) are the current head's and are counted before the parser sees them; a body of
known length (`Content-Length`) is fed exactly, by the body bytes the parser has handed on, and
what follows it is cut the same way. A chunked body is fed 4 KiB at a time, since only the parser
knows where it ends: its framing (chunk sizes, extensions, trailer fields) is bounded like a head
(a trailer line that never ends is refused), and what follows its end in the same slice is
counted from the slice's last blank line. The rest of a request already answered, which no one
reads, has the head's time to arrive. A read is one head and maybe its body on the usual path:
one search for the blank line and one or two calls of the parser, no work per byte in Python.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson
import structlog
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tasktrail.api.contract.problems import problem_fields
from tasktrail.settings import load_settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_END_OF_HEAD = b"\r\n\r\n"
# The bytes of the heads waiting in the pipeline may reach this many heads at the limit.
QUEUED_HEADS = 16
_UNKNOWN = -1  # a body's length, when it is chunked
# A chunked body is fed to the parser this much at a time: where it ends is known only from the
# parser, and what follows its end in the same slice is counted from the slice's last blank line.
CHUNKED_SLICE = 4096
_log = structlog.get_logger("tasktrail.http")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Read once per process from the settings; a test subclass sets its own.
    max_head_bytes: int | None = None
    head_timeout: float | None = None
    # Requests parsed behind a response still owed: 450 pipelined in one write are served, a
    # flood of them is not kept.
    max_queued_requests = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.max_head_bytes is None or cls.head_timeout is None:
            settings = load_settings()
            cls.max_head_bytes = settings.header_bytes
            cls.head_timeout = settings.header_timeout
        self._limit: int = cls.max_head_bytes
        self._timeout: float = cls.head_timeout
        self._deadline: asyncio.TimerHandle | None = None
        # The open head: its bytes so far, and the last 3 (its blank line may straddle reads).
        self._head_bytes = 0
        self._tail = b""
        # The parser is in a body (from on_headers_complete to on_message_complete): its length
        # (_UNKNOWN when chunked), the body bytes the parser has handed on so far, and, chunked,
        # the bytes of its framing (chunk sizes, extensions, trailers) so far.
        self._in_body = False
        self._length = _UNKNOWN
        self._body_received = 0
        self._framing = 0
        self._timing_body = False  # the head timer runs for the rest of an answered request
        self._heads = 0  # heads completed on this connection: a slice that crossed one shows it
        # The head sizes of the requests waiting in uvicorn's pipeline, oldest first.
        self._queued: deque[int] = deque()
        self._queued_bytes = 0
        self._switched = False  # upgraded to a WebSocket: the transport is another protocol's
        self._running: RequestResponseCycle | None = None  # the request whose app runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        running = self._running
        super().connection_lost(exc)
        # uvicorn tells the last request parsed that the client is gone; with requests queued,
        # that is not the one whose app runs (a stream would go on writing to no one).
        if running is not None and running is not self.cycle and not running.response_complete:
            running.disconnected = True
            running.message_event.set()

    def data_received(self, data: bytes) -> None:
        size = len(data)
        start = 0
        view: memoryview | None = None
        while start < size:
            chunked = self._in_body and self._length == _UNKNOWN
            if chunked:
                end = min(size, start + CHUNKED_SLICE)
            elif self._in_body:  # the rest of a body of known length, exactly
                end = min(size, start + max(1, self._length - self._body_received))
            else:
                end = self._end_of_head(data, start)
                if end < 0:
                    return  # refused, or the head goes on in the next read
            received, heads = self._body_received, self._heads
            if start == 0 and end == size:
                super().data_received(data)  # the usual read: one head and maybe its body
            else:
                if view is None:
                    view = memoryview(data)
                super().data_received(view[start:end])  # type: ignore[arg-type]
            if self.transport.is_closing() or self._switched:
                return
            if chunked and self._heads == heads:  # still the same message
                if self._in_body:
                    self._framing += (end - start) - (self._body_received - received)
                    if self._framing > self._limit:
                        self._too_large("The chunked body's sizes and trailer fields are")
                        return
                else:
                    self._count_what_follows(data, start, end)
            elif chunked and not self._in_body:  # it ended, and more requests with it
                self._count_what_follows(data, start, end)
            if self._head_bytes and not self._in_body and self._deadline is None:
                self._arm()  # a head under way (or blank lines): the time runs from now
            start = end

    def _end_of_head(self, data: bytes, start: int) -> int:
        """Where the head that is open at `start` ends in this read; -1 when it does not (its
        bytes are then counted and fed, and its time runs) or when it was refused."""
        room = self._limit - self._head_bytes
        if self._tail:  # the blank line may have begun in the previous read
            at = (self._tail + data[start : start + 3]).find(_END_OF_HEAD)
            if at >= 0:
                end = start + at + 4 - len(self._tail)
                if end - start > room:
                    self._too_large()
                    return -1
                self._head_bytes += end - start
                self._tail = b""
                return end
        at = data.find(_END_OF_HEAD, start, start + room)
        if at >= 0:
            self._head_bytes += at + 4 - start
            self._tail = b""
            return at + 4
        rest = len(data) - start
        if rest > room:
            self._too_large()  # the parser never sees the byte past the limit
            return -1
        self._head_bytes += rest
        self._tail = data[-3:] if rest >= 3 else (self._tail + data[start:])[-3:]
        super().data_received(data if start == 0 else memoryview(data)[start:])  # type: ignore[arg-type]
        if self._deadline is None and not self.transport.is_closing():
            self._arm()  # from the head's first byte; later reads do not put it off
        return -1

    def _count_what_follows(self, data: bytes, start: int, end: int) -> None:
        """A chunked body ended inside `data[start:end]`, which the parser has been fed whole:
        what followed it there is the next requests'. A head left open is counted from the
        slice's last blank line on (it cannot hold one): at most a slice more than its own bytes,
        when a short body of known length sits between, never fewer."""
        last = data.rfind(_END_OF_HEAD, max(0, start - 3), end)
        self._head_bytes = end - (start if last < 0 else last + 4)
        self._tail = bytes(data[max(start, end - 3) : end]) if self._head_bytes else b""
        if self._head_bytes > self._limit:
            self._too_large()

    def _content_length(self) -> int:
        """The length of the body about to be read, from the request's headers (llhttp has
        checked them); _UNKNOWN for a chunked one."""
        length = _UNKNOWN
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"transfer-encoding":
                return _UNKNOWN
        return length

    def on_headers_complete(self) -> None:
        self._disarm()
        head, self._head_bytes = self._head_bytes, 0
        self._tail = b""
        self._heads += 1
        self._in_body = True
        self._length = self._content_length()
        self._body_received = 0
        self._framing = 0
        waiting = len(self.pipeline)
        super().on_headers_complete()
        if len(self.pipeline) > waiting:  # queued behind a response still owed
            self._queued.append(head)
            self._queued_bytes += head
            if not self.transport.is_closing() and (
                len(self._queued) > self.max_queued_requests
                or self._queued_bytes > QUEUED_HEADS * self._limit
            ):
                self._close_behind_a_response(
                    f"more than {self.max_queued_requests} requests or "
                    f"{QUEUED_HEADS * self._limit // 1024} KiB of heads queued"
                )

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._timing_body:
            self._timing_body = False
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        waiting = len(self.pipeline)
        super().on_response_complete()
        if len(self.pipeline) < waiting:  # the oldest queued request has started
            self._queued_bytes -= self._queued.popleft()
        answered = self.cycle is not None and self.cycle.response_complete
        if (
            answered
            and self._in_body
            and self._deadline is None
            and not self.transport.is_closing()
        ):
            # Answered before its body was all read (a 401, a 413): the rest of it, which no
            # one reads, has the head's time to arrive, not for ever.
            self._timing_body = True
            self._arm()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def handle_websocket_upgrade(self) -> None:
        self._switched = True
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._timing_body:
            # The rest of a request already answered: no one is owed an answer.
            _log.warning("connection closed: an answered request's body did not end in time")
            self.transport.close()
            return
        if self.flow.read_paused:
            # This side stopped reading (requests queued behind a response), not the client:
            # the rest of the head waits unread, and its time runs again.
            self._arm()
            return
        self._refuse(408, f"The request's headers did not arrive within {self._timeout:g} seconds.")

    def _too_large(self, what: str = "The request line and headers are") -> None:
        self._refuse(431, f"{what} over {self._limit // 1024} KiB; send a smaller request.")

    def _refuse(self, status: int, detail: str) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is still owed on this connection (a live stream, or a request not yet
            # answered): an answer now would land inside it or before it.
            self._close_behind_a_response(f"a pipelined request head was refused ({status})")
            return
        body = orjson.dumps(problem_fields(status, detail))
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()

    def _close_behind_a_response(self, reason: str) -> None:
        _log.warning("connection closed behind an unfinished response", reason=reason)
        self._disarm()
        self.transport.close()
