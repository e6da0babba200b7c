"""Who is watching whose feed, and what wakes them: one watcher per process, fanned out in memory.

A live feed (`GET /api/{user_id}/events` as Server-Sent Events) subscribes here and sleeps until
its user's head moves. Nothing is pushed through this module but "user X wrote": each stream then
reads its own events after the last `seq` it sent, from the database, in a short query that holds
a pooled connection only while it runs. So a wake-up that is lost, doubled or early costs at most
one query, never an event missed or sent twice.

What wakes the streams:
- On PostgreSQL, NOTIFY. A process that committed a write announces its user on the channel
  `tasktrail_feed`, after the COMMIT and off the request's path (`announce`: the users written
  since the last announcement go in one statement). Every process keeps one `LISTEN` connection of
  its own (never one of the request pool, never one per client) and wakes the streams of the users
  it hears. The NOTIFY is not sent from inside the write's transaction on purpose: PostgreSQL holds
  one cluster-wide lock from a notifying transaction's commit until its WAL is flushed, which
  serialises the commits of every writer (measured here: 10 pgbench clients updating their own
  rows fell from 3,400-6,500 to 300-740 commits/s with a NOTIFY trigger; a NOTIFY in a statement
  of its own after the commit, which writes no WAL, left them at 3,900-4,400). The cost is that a
  process killed between a COMMIT and its announcement wakes no one: streams also read at every
  heartbeat, so such an event arrives within one heartbeat. When the listening connection is lost
  it is opened again with a growing pause, and every stream is woken once it is back.
- On SQLite, which has no NOTIFY, a write wakes this process's streams at once, and one poll per
  process of the watched users' heads (`user_streams.last_seq`) every `TASKTRAIL_SSE_POLL_SECONDS`
  wakes them for the writes of other processes.

The watcher starts with the first subscription, so a process that serves no stream opens no
extra connection.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Collection, Coroutine
from types import FrameType
from typing import Any

import anyio.to_thread
import psycopg
import structlog
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from tasktrail.database import DatabaseUnavailable, read_connection
from tasktrail.pg_pool import AsyncPool
from tasktrail.schema import user_streams

FEED_CHANNEL = "tasktrail_feed"
# How long the listening connection may stay silent before it is asked whether it still lives:
# a dead peer (a partition, a frozen server) sends no error, only silence.
LISTEN_CHECK_SECONDS = 30.0
RECONNECT_PAUSES = (0.5, 1.0, 2.0, 5.0)
# How long shutdown waits for the hub's own tasks once they are cancelled.
CLOSE_SECONDS = 5.0
_log = structlog.get_logger("tasktrail.live_feed")


class TooManyStreams(Exception):
    """The user already has as many open streams as this process allows."""


class ShuttingDown(Exception):
    """The process is stopping: no new stream."""


class Subscription:
    """One open stream's doorbell: `wait` returns when its user wrote, or the stream must end
    (the process stops, or the key that verified its token was withdrawn)."""

    __slots__ = ("_bell", "closed", "kid", "user_id")

    def __init__(self, user_id: str, kid: str | None = None) -> None:
        self.user_id = user_id
        self.kid = kid  # of the JWK-set key that verified the stream's token; None: the secret
        self.closed = False
        self._bell = asyncio.Event()

    def ring(self) -> None:
        self._bell.set()

    def close(self) -> None:
        self.closed = True
        self._bell.set()

    def clear(self) -> None:
        """Before a read: a write that commits during the read rings again, so none is lost."""
        self._bell.clear()

    async def wait(self, seconds: float) -> bool:
        """True when rung within `seconds`, False when they passed in silence."""
        try:
            async with asyncio.timeout(seconds):
                await self._bell.wait()
        except TimeoutError:
            return False
        return True


Watcher = Callable[["FeedHub"], Coroutine[Any, Any, None]]
# Tells every process that these users wrote (PostgreSQL's NOTIFY); None: this process only.
Announcer = Callable[[list[str]], Coroutine[Any, Any, None]]


class FeedHub:
    def __init__(
        self, watcher: Watcher, *, announcer: Announcer | None = None, streams_per_user: int
    ) -> None:
        self._watcher = watcher
        self._announcer = announcer
        self._streams_per_user = streams_per_user
        self._by_user: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._unannounced: set[str] = set()
        self._announcing: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def open_streams(self) -> int:
        return sum(len(streams) for streams in self._by_user.values())

    def watched_users(self) -> list[str]:
        return list(self._by_user)

    def subscribe(self, user_id: str, *, kid: str | None = None) -> Subscription:
        if self._stopping:
            raise ShuttingDown
        streams = self._by_user.setdefault(user_id, set())
        if len(streams) >= self._streams_per_user:
            raise TooManyStreams
        subscription = Subscription(user_id, kid)
        streams.add(subscription)
        if not _running_here(self._task):
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        streams = self._by_user.get(subscription.user_id)
        if streams is None:
            return
        streams.discard(subscription)
        if not streams:
            del self._by_user[subscription.user_id]

    def announce(self, user_id: str) -> None:
        """This user's write has committed. Costs the request a set insertion: the NOTIFY goes
        out from a task of its own, with every user written meanwhile in one statement."""
        if self._announcer is None:
            self.wake(user_id)
            return
        self._unannounced.add(user_id)
        if not _running_here(self._announcing):
            self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        assert self._announcer is not None  # noqa: S101 - started by announce() only with one
        while self._unannounced:
            users, self._unannounced = sorted(self._unannounced), set()
            try:
                await self._announcer(users)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the writes are committed whatever this does
                # Streams elsewhere find these events at their next heartbeat read.
                _log.warning("live feed announcement failed", error=str(error).strip())

    def wake(self, user_id: str) -> None:
        for subscription in self._by_user.get(user_id, ()):
            subscription.ring()

    def wake_all(self) -> None:
        for streams in self._by_user.values():
            for subscription in streams:
                subscription.ring()

    def end_streams_of_keys(self, kids: Collection[str]) -> None:
        """These keys were withdrawn from the JWK set: the streams whose tokens they verified
        end now (their clients reconnect with a token of a key still held). A rare event, so a
        walk over every stream of the process."""
        ended = 0
        for streams in self._by_user.values():
            for subscription in streams:
                if subscription.kid is not None and subscription.kid in kids:
                    subscription.close()
                    ended += 1
        if ended:
            _log.info("live feeds ended: their key was withdrawn", kids=sorted(kids), streams=ended)

    def stop_streams(self) -> None:
        """The process is shutting down: every stream ends now, so that none holds it up."""
        self._stopping = True
        for streams in self._by_user.values():
            for subscription in streams:
                subscription.close()

    async def aclose(self) -> None:
        """End every stream and the hub's own tasks. Shutdown waits for them at most
        `CLOSE_SECONDS`: a task that does not end when cancelled (a library that turned the
        cancellation into an error it retries) is left behind with a warning, not waited for
        forever."""
        self.stop_streams()
        running = [task for task in (self._task, self._announcing) if _running_here(task)]
        for task in running:
            assert task is not None  # noqa: S101 - for mypy: _running_here said so
            task.cancel()
        if not running:
            return
        _, stuck = await asyncio.wait([t for t in running if t is not None], timeout=CLOSE_SECONDS)
        if stuck:
            _log.warning(
                "live feed tasks did not end when cancelled; left behind", tasks=len(stuck)
            )

    async def _watch(self) -> None:
        try:
            await self._watcher(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged with its traceback, and streams carry on
            # A bug in a watcher must not leave streams asleep forever: they fall back to their
            # heartbeat reads (see the route) and the next subscription starts a new watcher.
            _log.exception("live feed watcher failed")
            self.wake_all()


def _cancelled() -> bool:
    """Whether the running task has been asked to end, even if the request was swallowed."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _running_here(task: asyncio.Task[None] | None) -> bool:
    """A task that runs, on this event loop. One app may be served by several loops one after
    the other (test clients do that); a task of a loop that is gone is not ours to await."""
    if task is None or task.done():
        return False
    return task.get_loop() is asyncio.get_running_loop()


def postgres_announcer(pool: AsyncPool) -> Announcer:
    async def announce(users: list[str]) -> None:
        async with pool.connection() as conn:
            await conn.execute(_NOTIFY, {"channel": FEED_CHANNEL, "users": users})

    return announce


_NOTIFY = "SELECT pg_notify(%(channel)s, u) FROM unnest(%(users)s::text[]) AS u"


def postgres_listener(conninfo: str, connect_timeout: int) -> Watcher:
    async def listen(hub: FeedHub) -> None:
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=connect_timeout
                )
            except psycopg.Error as error:
                failures += 1
                _log.warning("live feed cannot listen; retrying", error=str(error).strip())
                await asyncio.sleep(RECONNECT_PAUSES[min(failures, len(RECONNECT_PAUSES)) - 1])
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {FEED_CHANNEL}")
                    if failures:
                        _log.info("live feed listening again")
                    failures = 0
                    hub.wake_all()  # what committed while no one listened is read now
                    await _relay(conn, hub, connect_timeout)
            except (psycopg.Error, TimeoutError) as error:
                if _cancelled():
                    # A cancellation that arrived with the error (a timeout firing at the same
                    # moment, a query cancelled by the driver) is the hub closing: end.
                    raise asyncio.CancelledError from error
                failures += 1
                _log.warning("live feed lost its connection; retrying", error=str(error).strip())
                await asyncio.sleep(RECONNECT_PAUSES[min(failures, len(RECONNECT_PAUSES)) - 1])

    return listen


async def _relay(conn: psycopg.AsyncConnection[Any], hub: FeedHub, check_timeout: float) -> None:
    while True:
        async for notification in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
            hub.wake(notification.payload)
        # Silence: make sure it is not a dead connection's silence.
        async with asyncio.timeout(check_timeout):
            await conn.execute("SELECT 1")


def sqlite_poller(engine: Engine, seconds: float) -> Watcher:
    async def poll(hub: FeedHub) -> None:
        heads: dict[str, int] = {}
        while True:
            users = hub.watched_users()
            if users:
                try:
                    now = await anyio.to_thread.run_sync(_heads, engine, users)
                except (DatabaseUnavailable, DBAPIError) as error:
                    _log.warning("live feed poll failed; retrying", error=str(error))
                else:
                    for user_id, last_seq in now.items():
                        if heads.get(user_id) != last_seq:
                            hub.wake(user_id)
                    heads = now
            await asyncio.sleep(seconds)

    return poll


def _heads(engine: Engine, users: list[str]) -> dict[str, int]:
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(user_streams.c.user_id, user_streams.c.last_seq).where(
                user_streams.c.user_id.in_(users)
            )
        ).all()
    return {row.user_id: row.last_seq for row in rows}


def end_streams_on_shutdown(hub: FeedHub) -> None:
    """Make SIGTERM and SIGINT end the open streams before uvicorn waits for its connections.

    uvicorn stops on these signals by waiting for every open response to finish, and a live feed
    never finishes by itself: without this, each shutdown would wait out
    `timeout_graceful_shutdown` and then cancel. The signal handler uvicorn installed is kept and
    called after ours. Only the main thread may set signal handlers: elsewhere (an app served
    from a thread, as in tests) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(
            received: int,
            frame: FrameType | None,
            previous: Any = previous,
        ) -> None:
            loop.call_soon_threadsafe(hub.stop_streams)
            if callable(previous):
                previous(received, frame)
            else:  # no server's handler: let the signal do what it did before
                signal.signal(received, previous)
                signal.raise_signal(received)

        signal.signal(signum, handler)
