"""The load client: a minimal HTTP/1.1 keep-alive client on asyncio streams, in its own process.

Why not httpx: a general client spends more CPU per request than the service's trivial endpoint
does, and on a 2-core machine that CPU is taken from the server being measured. This one does
only what the benchmark needs: one connection per virtual user, write the request bytes, read
the status line and headers, read exactly Content-Length bytes. The service always sends
Content-Length (FastAPI/Starlette responses are not streamed); a response without one is
reported as a protocol error instead of being guessed at.

It runs in a process of its own (multiprocessing, spawn) so that its CPU time can be measured
apart from the orchestrator's, and so that neither waits for the other's GIL.

Two ways to send. Closed loop (the default): each virtual user sends its next request when the
previous answer has arrived, so the load adapts to the server. Open loop (`CellPlan.rate`): each
virtual user sends on its own schedule (Poisson arrivals at `rate` per second), whether or not its
earlier requests have been answered, and a request's latency runs from its scheduled time, so a
server that stalls shows as latency instead of as fewer requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import uvloop

from bench.http.scenarios import SCENARIOS_BY_NAME, Request, Scenario, VirtualUser

HOST = "127.0.0.1"
SAMPLES_KEPT = 5  # error bodies kept per cell, to say precisely what went wrong
_HEADERS_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION_CLOSE = b"\r\nconnection: close"
# uvicorn closes a keep-alive connection idle for 5 s (timeout_keep_alive): an open-loop user
# idle longer than this opens a new connection, as a browser's or an HTTP library's pool would,
# instead of writing into one the server is closing.
IDLE_CONNECTION_REUSE = 4.0


class ProtocolError(Exception):
    """The server answered something this client does not read (no Content-Length, not HTTP)."""


@dataclass(frozen=True, slots=True)
class CellPlan:
    """One (scenario, concurrency) cell, as one client process runs it."""

    scenario: str
    tag: str  # different in every cell, so that updates never repeat an earlier title
    port: int
    users: tuple[VirtualUser, ...]
    start_at: float  # time.monotonic() at which the warm-up ends and the measured window opens
    stop_at: float
    grace: float = 15.0  # a request still open this long after stop_at is counted as hung
    # Open loop: requests per second of each virtual user (Poisson arrivals); None: closed loop.
    rate: float | None = None
    seed: int = 0  # of the open loop's schedules, so that a run can be repeated


@dataclass(slots=True)
class CellResult:
    """What one client process saw in the measured window of a cell."""

    latencies: list[float] = field(default_factory=list)  # seconds, requests done in the window
    statuses: Counter[int] = field(default_factory=Counter)  # same requests, by status
    transport_errors: int = 0  # refused or reset connections, protocol errors
    hung: int = 0  # requests cancelled `grace` seconds after the window closed
    errors_outside_window: int = 0  # non-2xx during the warm-up (or just after the window)
    body_bytes: int = 0  # response bodies of the requests in the window
    cpu_seconds: float = 0.0  # this process's CPU time inside the window
    window_seconds: float = 0.0
    samples: list[str] = field(default_factory=list)
    in_flight: int = 0  # open loop: requests sent and not answered yet
    max_send_lag: float = 0.0  # open loop: the latest a request left after its scheduled time

    def record(
        self,
        plan: CellPlan,
        request: Request,
        status: int,
        body: bytes,
        began: float,
        *,
        scheduled: bool = False,
    ) -> None:
        """Count one answer. A closed loop counts the requests that finish inside the window;
        an open loop (`scheduled`: `began` is the scheduled time) those scheduled inside it,
        however late they finish, so that slow answers are not left out of the tail."""
        finished = time.monotonic()
        if scheduled:
            inside = plan.start_at <= began < plan.stop_at
        else:
            inside = plan.start_at <= finished <= plan.stop_at
        if inside:
            self.latencies.append(finished - began)
            self.statuses[status] += 1
            self.body_bytes += len(body)
        if 200 <= status < 300:
            return
        if not inside:
            self.errors_outside_window += 1
        self.sample(f"{status} {request.method} {request.path}: {body[:300]!r}")

    def sample(self, text: str) -> None:
        if len(self.samples) < SAMPLES_KEPT:
            self.samples.append(text)


def encode_request(request: Request, token: str, host: str) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    if request.authenticated:
        lines.append(f"Authorization: Bearer {token}")
    if request.body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(request.body)}"]
    elif request.method != "GET":
        lines.append("Content-Length: 0")  # a body-less PATCH still says so, as curl does
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + request.body if request.body is not None else head


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the connection stays open."""
    head = await reader.readuntil(_HEADERS_END)
    if not head.startswith(b"HTTP/1.1 ") or not head[9:12].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 status line: {head[:40]!r}")
    status = int(head[9:12])
    lowered = head.lower()  # header names are case-insensitive; uvicorn sends lower case
    length = _content_length(lowered)
    if length is None:
        if status not in (204, 304):
            raise ProtocolError(f"{status} without Content-Length (chunked is not supported)")
        length = 0
    body = await reader.readexactly(length) if length else b""
    return status, body, _CONNECTION_CLOSE not in lowered


def _content_length(lowered_head: bytes) -> int | None:
    start = lowered_head.find(_CONTENT_LENGTH)
    if start < 0:
        return None
    start += len(_CONTENT_LENGTH)
    return int(lowered_head[start : lowered_head.index(b"\r\n", start)])


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _close(streams: Streams | None) -> None:
    if streams is None:
        return
    streams[1].close()
    with contextlib.suppress(OSError):
        await streams[1].wait_closed()


async def _virtual_user(
    user: VirtualUser, scenario: Scenario, plan: CellPlan, result: CellResult
) -> None:
    """Send requests back to back on one keep-alive connection until the window closes."""
    host = f"{HOST}:{plan.port}"
    streams: Streams | None = None
    n = 0
    try:
        while time.monotonic() < plan.stop_at:
            if streams is None:
                streams = await _connect(plan.port, result)
                if streams is None:
                    continue
            request = scenario.request_for(user, n, plan.tag)
            n += 1
            began = time.monotonic()
            try:
                streams[1].write(encode_request(request, user.token, host))
                status, body, keep_alive = await read_response(streams[0])
            except (OSError, EOFError, asyncio.LimitOverrunError, ProtocolError) as error:
                # EOFError covers IncompleteReadError: the server closed in mid-response.
                result.transport_errors += 1
                result.sample(f"{request.method} {request.path}: {error!r}")
                await _close(streams)
                streams = None
                continue
            result.record(plan, request, status, body, began)
            if not keep_alive:
                await _close(streams)
                streams = None
    finally:
        await _close(streams)


async def _open_loop_user(
    user: VirtualUser, scenario: Scenario, plan: CellPlan, result: CellResult
) -> None:
    """Send requests at Poisson arrival times until the window closes, each on a connection of
    the user's that is free (a new one when all are busy), and wait for every answer."""
    assert plan.rate is not None
    # One generator per user, seeded: the same plan makes the same schedule.
    rng = random.Random(plan.seed * 1_000_003 + user.index)
    idle: list[tuple[Streams, float]] = []  # free connections, and since when
    sending: set[asyncio.Task[None]] = set()
    n = 0
    # The first arrival too is exponential: the users start at random phases.
    at = time.monotonic() + rng.expovariate(plan.rate)
    try:
        while at < plan.stop_at:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            request = scenario.request_for(user, n, plan.tag)
            n += 1
            task = asyncio.create_task(_send_scheduled(request, at, user, plan, result, idle))
            sending.add(task)
            task.add_done_callback(sending.discard)
            at += rng.expovariate(plan.rate)
        while sending:
            await asyncio.gather(*sending)
    finally:
        for task in list(sending):  # only when cancelled: the window's grace ran out
            task.cancel()
        for streams, _ in idle:
            await _close(streams)


async def _free_connection(
    idle: list[tuple[Streams, float]], port: int, result: CellResult
) -> Streams | None:
    while idle:
        streams, since = idle.pop()
        if time.monotonic() - since < IDLE_CONNECTION_REUSE:
            return streams
        await _close(streams)
    return await _connect(port, result, pause=False)


async def _send_scheduled(
    request: Request,
    scheduled: float,
    user: VirtualUser,
    plan: CellPlan,
    result: CellResult,
    idle: list[tuple[Streams, float]],
) -> None:
    result.max_send_lag = max(result.max_send_lag, time.monotonic() - scheduled)
    result.in_flight += 1
    try:
        streams = await _free_connection(idle, plan.port, result)
        if streams is None:
            return
        try:
            streams[1].write(encode_request(request, user.token, f"{HOST}:{plan.port}"))
            status, body, keep_alive = await read_response(streams[0])
        except (OSError, EOFError, asyncio.LimitOverrunError, ProtocolError) as error:
            result.transport_errors += 1
            result.sample(f"{request.method} {request.path}: {error!r}")
            await _close(streams)
            return
        # The latency runs from the scheduled time: waiting for a connection, or for the
        # client's own loop, is time the user waited too.
        result.record(plan, request, status, body, scheduled, scheduled=True)
        if keep_alive:
            idle.append((streams, time.monotonic()))
        else:
            await _close(streams)
    finally:
        result.in_flight -= 1


async def _connect(port: int, result: CellResult, *, pause: bool = True) -> Streams | None:
    try:
        return await asyncio.open_connection(HOST, port)
    except OSError as error:
        result.transport_errors += 1
        result.sample(f"connect: {error!r}")
        if pause:  # a closed loop retries at once: a refused connection must not make it spin
            await asyncio.sleep(0.05)
        return None


async def _measure_own_cpu(plan: CellPlan, result: CellResult) -> None:
    await asyncio.sleep(max(0.0, plan.start_at - time.monotonic()))
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(max(0.0, plan.stop_at - time.monotonic()))
    result.cpu_seconds = time.process_time() - cpu
    result.window_seconds = time.monotonic() - wall


async def _run_cell(plan: CellPlan) -> CellResult:
    scenario = SCENARIOS_BY_NAME[plan.scenario]
    result = CellResult()
    meter = asyncio.create_task(_measure_own_cpu(plan, result))
    loop = _virtual_user if plan.rate is None else _open_loop_user
    users = [asyncio.create_task(loop(u, scenario, plan, result)) for u in plan.users]
    # One deadline for the whole cell instead of a timeout per request, which would cost a
    # timer per request in the client's hot loop.
    deadline = plan.stop_at + plan.grace - time.monotonic()
    if not users:  # more client processes than virtual users: this one only measures itself
        await meter
        return result
    done, pending = await asyncio.wait(users, timeout=max(0.0, deadline))
    # A closed-loop user has at most one request open; an open-loop user may have several.
    result.hung += len(pending) if plan.rate is None else result.in_flight
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await meter
    for task in done:
        task.result()  # a bug in the client itself must not pass for a quiet cell
    return result


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    # uvloop (installed with uvicorn[standard]): a little less CPU per request than asyncio's own
    # loop, and the same loop the server runs on.
    return uvloop.new_event_loop


def run_cell(plan: CellPlan) -> CellResult:
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        return runner.run(_run_cell(plan))


def worker_main(pipe: Connection) -> None:
    """A client process: run each plan received, send its result back, stop on None."""
    # Ctrl-C reaches the whole process group; the orchestrator decides when clients stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (plan := pipe.recv()) is not None:
        pipe.send(run_cell(plan))
