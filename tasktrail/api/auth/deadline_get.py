"""An HTTP GET run in a worker thread under one deadline for the whole exchange.

urllib's `timeout` bounds each socket operation, not the exchange: a server that sends a byte
every few seconds keeps one read going for ever, and a thread the caller gave up on (anyio's
abandon_on_cancel) goes on holding its socket. Here each connection the GET opens is watched
from the moment it is connected: when the waiting side is done (the deadline passed, or it was
cancelled) it shuts those sockets down, and whatever the thread was blocked in, the TLS
handshake, the head or the body, fails at once. The thread also checks the deadline between
the reads of the body, so a fast but endless answer stops there as well.

Name resolution is the one step no socket can cut short: it is bounded by the resolver's own
timeouts.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

_READ_SIZE = 64 * 1024


class DeadlineGet:
    """One GET and its deadline. `run` blocks, in a worker thread; the waiting side holds this
    as a context manager, whose exit ends the GET if it is still under way."""

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._aborted = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    def remaining(self) -> float:
        """The seconds left; TimeoutError once none are, or once the waiting side gave up."""
        left = self._deadline - time.monotonic()
        if left <= 0 or self._aborted:
            raise TimeoutError("the deadline of the download passed")
        return left

    def run(self, request: urllib.request.Request, limit: int) -> bytes:
        """The body of the answer, at most `limit` bytes of it (ask for one more than you
        accept to tell a body over the cap). An error status raises urllib's HTTPError, as
        urlopen does (close it: it holds the connection)."""
        opener = self._opener()
        try:
            with opener.open(request, timeout=self.remaining()) as response:
                return self._read(response, limit)
        finally:
            self._forget_sockets()

    def _opener(self) -> urllib.request.OpenerDirector:
        """What an http(s) GET needs and nothing else. build_opener would add urllib's ftp:,
        file: and data: handlers too, and a redirect to ftp:// would open an FTP connection no
        deadline watches; here any scheme but http and https fails at once, "unknown url type".
        The environment's proxies are used for http and https only, for the same reason."""
        proxies = {
            scheme: url
            for scheme, url in urllib.request.getproxies().items()
            if scheme in ("http", "https")
        }
        opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(proxies),
            _HTTPHandler(self),
            _HTTPSHandler(self),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPRedirectHandler(),
            urllib.request.HTTPErrorProcessor(),
            urllib.request.UnknownHandler(),
        ):
            opener.add_handler(handler)
        return opener

    def abort(self) -> None:
        """From any thread: the GET's blocking socket operation, if any, fails now."""
        with self._lock:
            self._aborted = True
            for watched in self._watched:
                with suppress(OSError):  # not connected any more
                    watched.shutdown(socket.SHUT_RDWR)

    def watch(self, connected: socket.socket) -> None:
        """Called in the worker thread as soon as a connection's TCP socket is connected."""
        with self._lock:
            if self._aborted:
                raise TimeoutError("the deadline of the download passed")
            # A duplicate descriptor of the same socket: shutting it down shuts the connection
            # down, even after the TLS layer took the original over (wrap_socket detaches it).
            self._watched.append(connected.dup())

    def _forget_sockets(self) -> None:
        with self._lock:
            for watched in self._watched:
                watched.close()
            self._watched.clear()

    def _read(self, response: http.client.HTTPResponse, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            self.remaining()
            chunk = response.read1(min(_READ_SIZE, limit - size))
            if not chunk:
                # A shutdown by abort() reads as the end of the body: not a whole answer.
                self.remaining()
                if response.length:  # the server closed before the length it announced
                    raise http.client.IncompleteRead(b"".join(chunks), response.length)
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """Connects within the time left, and has its socket watched once connected."""

    download: DeadlineGet

    def connect(self) -> None:
        self.timeout = self.download.remaining()  # a redirect's connection has less time left
        super().connect()
        self.download.watch(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection, _WatchedHTTPConnection):
    """HTTPSConnection.connect calls super().connect(), which is _WatchedHTTPConnection's in
    this order: the TCP socket is watched before the TLS handshake, so a handshake that drips
    is cut short too."""


def _factory(
    kind: type[_WatchedHTTPConnection], download: DeadlineGet
) -> Callable[..., http.client.HTTPConnection]:
    def connection(host: str, **arguments: Any) -> http.client.HTTPConnection:
        made = kind(host, **arguments)
        made.download = download
        return made

    return connection


class _WatchedOpen(urllib.request.AbstractHTTPHandler):
    """urllib's handler, opening connections whose sockets the download watches."""

    connection_class: type[_WatchedHTTPConnection]

    def __init__(self, download: DeadlineGet) -> None:
        super().__init__()
        self._download = download

    def do_open(
        self, http_class: Any, req: urllib.request.Request, **http_conn_args: Any
    ) -> http.client.HTTPResponse:
        watched = _factory(self.connection_class, self._download)
        return super().do_open(watched, req, **http_conn_args)


class _HTTPHandler(_WatchedOpen, urllib.request.HTTPHandler):
    connection_class = _WatchedHTTPConnection


class _HTTPSHandler(_WatchedOpen, urllib.request.HTTPSHandler):
    """urllib's default HTTPS handler (the default context: certificates and host names are
    checked), with watched connections."""

    connection_class = _WatchedHTTPSConnection
