"""A Server-Sent Events client for the tests: a real HTTP stream, read in a thread.

It parses the wire format as the HTML standard's EventSource does (fields, comments, the blank
line that dispatches a message) and hands each message to the test through a queue, so that a
test waits for what it expects with a deadline instead of hanging on a read.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class Ended:
    """The stream ended (the server closed it, or the client did): `error` says how."""

    error: str | None = None


class SseStream:
    """`GET url` with `Accept: text/event-stream`; messages arrive in `messages` as they come."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None
    ) -> None:
        self.messages: queue.Queue[Message | Ended] = queue.Queue()
        self.status: int | None = None
        self.response_headers: httpx2.Headers | None = None
        self._opened = threading.Event()
        self._client = httpx2.Client(timeout=httpx2.Timeout(30, read=60))
        self._closing = False
        self._body = b""
        self._thread = threading.Thread(
            target=self._run,
            args=(url, {"Accept": "text/event-stream", **(headers or {})}, params),
            daemon=True,
        )
        self._thread.start()
        if not self._opened.wait(30):
            raise AssertionError("the stream did not answer within 30 s")

    def _run(self, url: str, headers: dict[str, str], params: dict[str, Any] | None) -> None:
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                self.status = response.status_code
                self.response_headers = response.headers
                if response.status_code != 200:
                    self._body = response.read()
                    self._opened.set()
                    self.messages.put(Ended())
                    return
                self._opened.set()
                self._parse(response)
            self.messages.put(Ended())
        except httpx2.HTTPError as error:
            self._opened.set()
            self.messages.put(Ended(None if self._closing else repr(error)))

    def _parse(self, response: httpx2.Response) -> None:
        current = Message()
        for line in response.iter_lines():
            if self._closing:
                return  # leaving the `with` closes the connection: the server sees us go
            if line == "":
                if current != Message():  # a blank line after nothing dispatches nothing
                    self.messages.put(current)
                current = Message()
                continue
            name, colon, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "" and colon:
                current.comments.append(value)
            elif name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data_lines.append(value)
            elif name == "retry":
                current.retry = value

    def problem(self) -> Any:
        return orjson.loads(self._body)

    def next(self, timeout: float = 15) -> Message | Ended:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing arrived on the stream within {timeout} s") from None

    def next_event(self, timeout: float = 15) -> Message:
        """The next message that carries an event (heartbeats and `retry` skipped)."""
        while True:
            item = self.next(timeout)
            if isinstance(item, Ended):
                raise AssertionError(f"the stream ended while an event was awaited: {item}")
            if item.data_lines:
                return item

    def events(self, count: int, timeout: float = 15) -> list[Message]:
        return [self.next_event(timeout) for _ in range(count)]

    def wait_end(self, timeout: float = 15) -> Ended:
        while True:
            item = self.next(timeout)
            if isinstance(item, Ended):
                return item

    def close(self) -> None:
        """Hang up. The reader notices at its next line: the tests' heartbeats come often."""
        self._closing = True
        self._thread.join(10)
        self._client.close()

    def __enter__(self) -> SseStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
