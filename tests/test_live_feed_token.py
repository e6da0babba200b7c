"""A live feed lives no longer than its token, through uvicorn on loopback, on both engines.

The stream is the one route that takes its token in the URL (`?access_token=`), and URLs leak:
so it ends when the token is refused everywhere else (its `exp` plus the leeway), sending nothing
written after that, and when the key that verified it is withdrawn from the JWK set.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.api.http.metrics import Metrics
from tasktrail.api.live.hub import FeedHub, sqlite_poller
from tasktrail.api.routes.event_stream import RECONNECT_MS, _messages, message
from tasktrail.database import read_connection
from tasktrail.queries.feed import user_feed
from tests.conftest import auth, live_server, make_settings, make_token, new_user_id
from tests.jwks_helpers import (
    JwksServer,
    SigningKey,
    bearer,
    better_auth_claims,
    jwk_set,
    jwks_server,
    make_key,
    same_kid,
)
from tests.sse_client import Ended, Message, SseStream

LEEWAY = 5
# Long: a stream that ends here ends at its token's deadline or on a withdrawn key, not at a
# heartbeat.
HEARTBEAT_SECONDS = 30.0


def create(base_url: str, user_id: str, title: str) -> dict[str, Any]:
    """A write with a fresh token of the user's (never the stream's)."""
    response = httpx2.post(
        f"{base_url}/api/{user_id}/tasks", json={"title": title}, headers=auth(user_id)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def feed(base_url: str, user_id: str) -> list[dict[str, Any]]:
    response = httpx2.get(f"{base_url}/api/{user_id}/events", headers=auth(user_id))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


def until_end(stream: SseStream, seconds: float) -> tuple[list[Message], Ended | None, float]:
    """The messages that arrive before the stream ends, how it ended (None: it did not within
    `seconds`) and when (Unix time, to compare with a token's exp)."""
    deadline = time.monotonic() + seconds
    received: list[Message] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = stream.messages.get(timeout=min(left, 0.02))
        except queue.Empty:
            continue
        if isinstance(item, Ended):
            return received, item, time.time()
        received.append(item)
    return received, None, time.time()


def titles(messages: list[Message]) -> list[str]:
    return [message.json()["data"]["title"] for message in messages if message.data_lines]


@pytest.fixture(scope="module")
def base_url(database_url: str, engine: Engine) -> Iterator[str]:
    settings = make_settings(
        database_url,
        jwt_leeway=LEEWAY,
        sse_heartbeat_seconds=HEARTBEAT_SECONDS,
        sse_poll_seconds=0.05,
    )
    with live_server(create_app(settings, engine=engine)) as url:
        yield url


def test_a_stream_ends_when_its_token_is_refused_and_sends_nothing_written_after(
    base_url: str,
) -> None:
    """A token past its exp but inside the leeway, in the URL: the stream serves events until
    exp + leeway, then ends by itself; an event written just after is never sent on it."""
    user_id = new_user_id()
    exp = int(time.time()) - 1
    refused_after = exp + LEEWAY  # 3 to 4 s from now
    token = make_token(user_id, exp=exp)
    url = f"{base_url}/api/{user_id}/events"
    late: dict[str, Any] = {}

    def write_after_the_deadline() -> None:
        time.sleep(max(0.0, refused_after - time.time()) + 0.2)
        late["task"] = create(base_url, user_id, "written after the deadline")
        late["other route"] = httpx2.get(
            f"{base_url}/api/{user_id}/tasks", headers=bearer(token)
        ).status_code

    with SseStream(url, params={"access_token": token}) as stream:
        assert stream.status == 200
        create(base_url, user_id, "written before the deadline")
        before = stream.next_event(timeout=max(0.5, refused_after - time.time()))
        assert before.json()["data"]["title"] == "written before the deadline"
        writer = threading.Thread(target=write_after_the_deadline)
        writer.start()
        received, ended, ended_at = until_end(stream, refused_after - time.time() + 4)
        writer.join(15)
    assert "task" in late, "the late write did not happen"
    assert late["other route"] == 401  # every other route refuses the token by then
    assert titles(received) == [], "an event written after the token's deadline was sent"
    assert ended is not None, "the stream outlived its token"
    assert ended.error is None  # the chunked response completed: a clean end, not a reset
    assert refused_after - 0.05 <= ended_at <= refused_after + 2
    # The late event was written: a stream with a fresh token resumes with it.
    assert [event["seq"] for event in feed(base_url, user_id)] == [1, 2]


def test_a_read_that_returns_events_written_after_the_deadline_sends_none_of_them(
    base_url: str, engine: Engine
) -> None:
    """A read that began before the token's deadline and returns after it may hold events
    written after it: those are not sent, and the stream ends before them. The stream is driven
    here with a page read from the log, since a server's reads are too quick to catch at it."""
    user_id = new_user_id()
    create(base_url, user_id, "before the deadline")
    time.sleep(0.05)
    create(base_url, user_id, "after the deadline")
    with read_connection(engine) as conn:
        page = user_feed(conn, user_id, after=0, limit=10)
    before, after = page.events
    refused_after = (before.occurred_at.timestamp() + after.occurred_at.timestamp()) / 2

    async def stream() -> list[bytes]:
        hub = FeedHub(sqlite_poller(engine, 60.0), streams_per_user=1)
        subscription = hub.subscribe(user_id)
        messages = _messages(
            hub,
            subscription,
            engine,
            Metrics(engine),
            after=0,
            first=page,
            heartbeat=HEARTBEAT_SECONDS,
            deadline=5.0,
            refused_after=refused_after,
        )
        try:
            async with asyncio.timeout(10):
                return [chunk async for chunk in messages]
        finally:
            await hub.aclose()

    chunks = asyncio.run(stream())
    assert chunks == [b"retry: %d\n\n" % RECONNECT_MS, message(before)]


@pytest.fixture
def old() -> SigningKey:
    return make_key("ES256")


@pytest.fixture
def new() -> SigningKey:
    return make_key("EdDSA")


@pytest.fixture
def served_keys(old: SigningKey, new: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(jwk_set(old, new)) as server:
        yield server


@pytest.fixture
def jwks_base_url(database_url: str, engine: Engine, served_keys: JwksServer) -> Iterator[str]:
    settings = make_settings(
        database_url,
        jwks_url=served_keys.url,
        sse_heartbeat_seconds=HEARTBEAT_SECONDS,
        sse_poll_seconds=0.05,
    )
    app = create_app(settings, engine=engine, jwks_refetch_interval=0.0)
    with live_server(app) as url:
        yield url


def fetch_again(base_url: str, user_id: str) -> int:
    """A request with a kid the service has not seen: it fetches the JWK set again (the app's
    refetch interval is 0), as after a rotation. Its status: 401."""
    stranger = make_key("EdDSA")
    return httpx2.get(
        f"{base_url}/api/{user_id}/tasks",
        headers=bearer(stranger.sign(better_auth_claims(user_id))),
    ).status_code


def test_a_stream_ends_once_its_key_is_withdrawn_and_others_stay_open(
    jwks_base_url: str, served_keys: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """The set drops a key: once the service refreshes it, the stream whose token that key
    verified ends at once; the user's stream verified by the other key goes on."""
    user_id = new_user_id()
    url = f"{jwks_base_url}/api/{user_id}/events"
    withdrawn = SseStream(url, params={"access_token": old.sign(better_auth_claims(user_id))})
    kept = SseStream(url, headers=bearer(new.sign(better_auth_claims(user_id))))
    try:
        assert (withdrawn.status, kept.status) == (200, 200)
        create(jwks_base_url, user_id, "while both keys are in the set")
        assert withdrawn.next_event().json()["data"]["title"] == "while both keys are in the set"
        assert kept.next_event().json()["data"]["title"] == "while both keys are in the set"

        served_keys.serve(jwk_set(new))
        assert fetch_again(jwks_base_url, user_id) == 401
        assert served_keys.count() == 2

        received, ended, _ = until_end(withdrawn, 5)
        assert ended is not None, "the stream of a withdrawn key stayed open"
        assert ended.error is None
        assert titles(received) == []

        create(jwks_base_url, user_id, "after the withdrawal")
        assert kept.next_event().json()["data"]["title"] == "after the withdrawal"

        # The other key goes too (and the stream verified by it with it).
        served_keys.serve(jwk_set(old))
        assert fetch_again(jwks_base_url, user_id) == 401
        received, ended, _ = until_end(kept, 5)
        assert ended is not None, "the stream of the second withdrawn key stayed open"
        assert titles(received) == []
    finally:
        withdrawn.close()
        kept.close()
    # A new stream with a token of a key no longer in the set is refused.
    with SseStream(url, params={"access_token": new.sign(better_auth_claims(user_id))}) as again:
        assert again.status == 401


def test_a_stream_ends_once_its_key_is_replaced_under_the_same_kid(
    jwks_base_url: str, served_keys: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """The set republishes the stream's kid with another key (a compromised key replaced): the
    stream the old key verified ends once the service refreshes the set."""
    user_id = new_user_id()
    url = f"{jwks_base_url}/api/{user_id}/events"
    with SseStream(url, params={"access_token": old.sign(better_auth_claims(user_id))}) as stream:
        assert stream.status == 200
        create(jwks_base_url, user_id, "before the replacement")
        assert stream.next_event().json()["data"]["title"] == "before the replacement"

        served_keys.serve(jwk_set(same_kid(old, make_key("ES256")), new))
        assert fetch_again(jwks_base_url, user_id) == 401
        assert served_keys.count() == 2

        received, ended, _ = until_end(stream, 5)
        assert ended is not None, "the stream of a replaced key stayed open"
        assert ended.error is None
        assert titles(received) == []
