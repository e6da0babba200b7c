"""A server that answers every request with the same canned bytes: the load client's ceiling.

Pointing the load client at it, with the same request as the reference scenario, shows how many
requests per second the client itself can drive on this machine when the server costs next to
nothing. When that is far above what tasktrail reaches, the client is not what limits tasktrail.
It understands only body-less requests (GET), which is all the ceiling scenario sends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.synchronize import Event
from typing import cast

import uvloop

# What tasktrail's /healthz answers, minus the headers the client does not look at.
CANNED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
    b'{"status":"ok"}'
)


class _Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream socket's transport; uvloop's is not a subclass of asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._pending += data
        # One answer per complete request head; a pipelined burst gets one answer each.
        while (end := self._pending.find(b"\r\n\r\n")) >= 0:
            self._pending = self._pending[end + 4 :]
            self._transport.write(CANNED)


async def _serve(port: int, ready: Event) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Canned, "127.0.0.1", port, backlog=1024)
    ready.set()
    async with server:
        await server.serve_forever()


def _main(port: int, ready: Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops it, with SIGTERM
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(port, ready))


@contextmanager
def stub_server(port: int) -> Iterator[int]:
    """Serve canned answers on 127.0.0.1:port in a process of its own; yields its pid."""
    context = get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_main, args=(port, ready), daemon=True)
    process.start()
    try:
        if not ready.wait(timeout=30):
            raise RuntimeError("the stub server did not start within 30 s")
        assert process.pid is not None
        yield process.pid
    finally:
        process.terminate()  # SIGTERM to this one pid
        process.join(timeout=5)
