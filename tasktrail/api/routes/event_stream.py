"""The user's feed as Server-Sent Events: replay after a `seq`, then each event as it commits.

Each SSE message is one event: `id:` its `seq` (what a browser sends back as `Last-Event-ID`),
`event:` its type and `data:` the event exactly as the JSON feed serves it (keys sorted, one
line). The stream reads the log itself, after the last `seq` it sent, whenever the live feed hub
rings (api/live/hub.py) and at every heartbeat. A user's events commit in `seq` order (each write
holds the user's stream row until it commits), so the events after `seq` N that a read finds are
N+1, N+2... without holes; the stream still sends only the run that follows its last `seq`
without a gap, so that a hole, if one could ever appear, would be waited out and never skipped.
A client that reconnects with `Last-Event-ID` therefore misses nothing and gets nothing twice.

A stream lives no longer than its token. Its token was checked once, when it opened, and may have
come in a URL (`?access_token=`), which leaks: so the stream ends at the token's `exp` plus the
leeway, the instant every other route starts refusing it. No read of the log starts after it, and
an event written after it is not sent, even when a read begun before returns it. A stream whose
token was verified by a key withdrawn from the JWK set ends as soon as the refresh notices
(`FeedHub.end_streams_of_keys`). The client reconnects with a fresh token and `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio.to_thread
import orjson
import structlog
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response, StreamingResponse

from tasktrail.api.auth.tokens import Principal, TokenVerifier
from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.problems import Problem
from tasktrail.api.contract.representation import event_body
from tasktrail.api.http.media_types import EVENT_STREAM
from tasktrail.api.http.metrics import Metrics
from tasktrail.api.live.hub import FeedHub, ShuttingDown, Subscription, TooManyStreams
from tasktrail.api.routes.deps import unauthorized
from tasktrail.api.services import services
from tasktrail.database import DatabaseUnavailable, read_connection
from tasktrail.domain.events import Event
from tasktrail.queries.feed import FeedPage, user_feed

PAGE = 500  # events per read while catching up
# How soon a browser should come back after the stream ends (a restart, a shutdown), in ms.
RECONNECT_MS = 1000
HEARTBEAT = b": heartbeat\n\n"
GAP_PAUSE_SECONDS = 0.05
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to; a buffered event stream is no stream.
    "X-Accel-Buffering": "no",
}
STREAMS_RETRY_AFTER_SECONDS = "5"
_log = structlog.get_logger("tasktrail.event_stream")


def message(event: Event) -> bytes:
    data = orjson.dumps(event_body(event), option=orjson.OPT_SORT_KEYS)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.type.encode(), data)


async def event_stream_response(request: Request, principal: Principal, after: int) -> Response:
    """Open the stream: 429 past the user's limit, 503 when the first read fails; then stream
    until the token is refused."""
    parts = services(request)
    hub = parts.feed_hub
    user_id = principal.user_id
    if request.scope.get("state", {}).get("is_head"):
        # HEAD: the GET's status and headers, and no stream that would never end.
        return Response(media_type=EVENT_STREAM, headers=STREAM_HEADERS)
    try:
        subscription = hub.subscribe(user_id, kid=principal.kid)
    except TooManyStreams:
        raise Problem(
            429,
            f"This user already has {parts.settings.sse_streams_per_user} live "
            "streams open here; close one, or retry later.",
            headers={"Retry-After": STREAMS_RETRY_AFTER_SECONDS},
        ) from None
    except ShuttingDown:
        raise Problem(
            503, "The service is shutting down; reconnect.", headers={"Retry-After": "1"}
        ) from None
    # Checked after subscribing, with no await between: a key withdrawn since the token was
    # verified (while the request waited in line) is seen here, and one withdrawn from now on
    # ends the subscription.
    refused = _refusal(principal, parts.verifier)
    if refused is not None:
        hub.unsubscribe(subscription)
        raise unauthorized(f"The token was refused: {refused}.")
    # A stream lasts hours and has its own limit: it gives back the user's place in the
    # process's fair share (api/http/fair_share.py) as it starts, not when it ends.
    parts.fair_share.leave(request.scope.setdefault("state", {}))
    engine = parts.engine
    try:
        # Subscribed first, read second: a write that commits during this read rings the bell.
        first = await in_thread(request, _feed, engine, user_id, after)
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    refused = _refusal(principal, parts.verifier)
    if refused is not None:
        # The read may have waited for a thread past the token's end, and then seen what was
        # written after it: nothing of it is sent. (A read begun in time saw nothing later.)
        hub.unsubscribe(subscription)
        raise unauthorized(f"The token was refused: {refused}.")
    stream = _messages(
        hub,
        subscription,
        engine,
        parts.metrics,
        after=after,
        first=first,
        heartbeat=parts.settings.sse_heartbeat_seconds,
        deadline=parts.settings.database_deadline,
        refused_after=principal.refused_after,
    )
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=STREAM_HEADERS)


def _refusal(principal: Principal, verifier: TokenVerifier) -> str | None:
    """Why the token, verified when the request came in, is refused now; None: it is not."""
    if time.time() >= principal.refused_after:
        return "the token has expired: get a new one"
    if principal.kid is not None and not verifier.holds_key(principal.kid):
        return f"its key (kid {principal.kid!r}) was withdrawn from the JWK set"
    return None


async def _messages(
    hub: FeedHub,
    subscription: Subscription,
    engine: Engine,
    metrics: Metrics,
    *,
    after: int,
    first: FeedPage,
    heartbeat: float,
    deadline: float,
    refused_after: float,
) -> AsyncIterator[bytes]:
    """The stream's messages; it returns (the chunked response ends) when the subscription is
    closed or at `refused_after` (Unix time), the instant its token is refused."""
    reader = _FeedReader(engine, subscription.user_id, deadline)
    metrics.stream_opened()
    try:
        yield b"retry: %d\n\n" % RECONNECT_MS
        last = after
        page: FeedPage | None = first
        while not subscription.closed:
            more = False
            if page is not None:
                sent, gap = _run_after(last, page.events)
                sent, late = _written_by(refused_after, sent)
                for event in sent:
                    if subscription.closed:
                        return  # its key was withdrawn while a page was being sent
                    yield message(event)
                    last = event.seq
                if late:
                    return  # written after the token's end: for the next stream, with a new one
                if gap:
                    await asyncio.sleep(GAP_PAUSE_SECONDS)
                more = page.has_more or gap
            if not more:
                left = refused_after - time.time()
                if left <= 0:
                    return
                rung = await subscription.wait(min(heartbeat, left))
                if subscription.closed or time.time() >= refused_after:
                    return
                if not rung:
                    yield HEARTBEAT
                # Read on every heartbeat too: a wake-up lost with a dropped listening
                # connection delays an event by one heartbeat at most.
                subscription.clear()
            left = refused_after - time.time()
            if subscription.closed or left <= 0:
                return  # no read starts once the token is refused
            page = await reader.read_or_none(last, within=left)
    finally:
        hub.unsubscribe(subscription)
        metrics.stream_closed()


def _written_by(refused_after: float, events: list[Event]) -> tuple[list[Event], bool]:
    """The events written by `refused_after`, and whether a later one cut the list short."""
    for index, event in enumerate(events):
        if event.occurred_at.timestamp() > refused_after:
            return events[:index], True
    return events, False


def _run_after(last: int, events: list[Event]) -> tuple[list[Event], bool]:
    """The events that follow `last` without a hole, and whether a hole cut the page short."""
    expected = last + 1
    for index, event in enumerate(events):
        if event.seq != expected:
            return events[:index], True
        expected += 1
    return events, False


class _FeedReader:
    """A stream's reads of the log during the stream, each waited on for a bounded time.

    A database that hangs answers nothing, so a read is waited on for `deadline` seconds at
    most: past it the stream goes back to its heartbeats (a proxy would close a silent stream)
    and the read goes on in its thread. The next read waits for that same read instead of
    starting another, so a stream holds at most one thread and one connection however long the
    database hangs. It asks for the same `seq`: the stream sends nothing while a read is out.
    """

    def __init__(self, engine: Engine, user_id: str, deadline: float) -> None:
        self._engine = engine
        self._user_id = user_id
        self._deadline = deadline
        self._running: asyncio.Task[FeedPage] | None = None

    async def read_or_none(self, after: int, *, within: float) -> FeedPage | None:
        """The page after `after`, or None when the database did not answer (retried later);
        a browser's EventSource does not reconnect after a 503, so the stream stays open.

        Waited on for `within` seconds at most, when that is shorter than the deadline: the
        time the stream's token has left."""
        if self._running is None:
            self._running = asyncio.ensure_future(
                anyio.to_thread.run_sync(_feed, self._engine, self._user_id, after)
            )
            self._running.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(min(self._deadline, within)):
                page = await asyncio.shield(self._running)
        except TimeoutError:
            if within >= self._deadline:
                _log.warning(
                    "live feed read still waiting on the database; heartbeats go on",
                    deadline=self._deadline,
                )
            return None
        except (DatabaseUnavailable, DBAPIError) as error:
            self._running = None
            # The driver's message only: the statement's parameters stay out of the log.
            reason = str(getattr(error, "orig", None) or error).strip()
            _log.warning("live feed read failed; retrying at the next heartbeat", error=reason)
            return None
        except BaseException:
            self._running = None
            raise
        self._running = None
        return page


def _retrieve(read: asyncio.Task[FeedPage]) -> None:
    """A read that outlives its stream has nobody to take its error: take it here, so that
    asyncio does not log it as never retrieved (it was logged, or it did not matter)."""
    if not read.cancelled():
        read.exception()


def _feed(engine: Engine, user_id: str, after: int) -> FeedPage:
    with read_connection(engine) as conn:
        return user_feed(conn, user_id, after=after, limit=PAGE)
