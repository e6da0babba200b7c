"""uvicorn's HTTP protocol with a bound on each request's head: its size and the time it takes.

uvicorn (with httptools) reads a request's line and headers for as long as they keep coming
and however large they are: an 8 MB `Authorization` header was read, parsed and handed to the
app before any check, and a connection that sends half a head, or nothing at all, was kept
open until the process ran out of file descriptors. This protocol refuses a head over
`TASKTRAIL_HEADER_BYTES` (431) and one that is not complete `TASKTRAIL_HEADER_TIMEOUT` seconds
after the connection opened, or after the read that brought only part of it (408), then closes
the connection. Both
answers are problem details, written directly: no app runs for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tasktrail.api.problems import problem_fields
from tasktrail.settings import load_settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Read once per process from the settings; a test subclass sets its own.
    max_head_bytes: int | None = None
    head_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.max_head_bytes is None or cls.head_timeout is None:
            settings = load_settings()
            cls.max_head_bytes = settings.header_bytes
            cls.head_timeout = settings.header_timeout
        self._limit: int = cls.max_head_bytes
        self._timeout: float = cls.head_timeout
        self._reading_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._limit:
                self._refuse(
                    431,
                    f"The request line and headers are over {self._limit // 1024} KiB; "
                    "send a smaller request.",
                )
                return
        super().data_received(data)
        # Usually the whole head came in this one read and on_headers_complete has run: no
        # timer at all. A head split over reads has the timeout, from now, to be complete.
        if self._reading_head and self._deadline is None and not self.transport.is_closing():
            self._arm()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head: counted and timed from its first byte (until then, an idle
        # keep-alive connection is uvicorn's timeout_keep_alive's to close).
        self._reading_head = True
        self._head_bytes = 0

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._reading_head and not self.transport.is_closing():
            self._refuse(
                408,
                f"The request's headers did not arrive within {self._timeout:g} seconds.",
            )

    def _refuse(self, status: int, detail: str) -> None:
        self._disarm()
        body = orjson.dumps(problem_fields(status, detail))
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
