"""The PostgreSQL pool of the hot request path: psycopg's async connections, in autocommit.

The hot routes run on the event loop and talk to PostgreSQL through this pool, not through a
worker thread and not through SQLAlchemy's engine. Measured on this machine, a bare single-row
read served about 2,900 req/s this way, 1,900 through SQLAlchemy's async engine (its pool checkout
alone costs more than the query) and 1,300 through a `def` route on the sync engine
(docs/decisions.md). The connections are in autocommit: a read is one round trip, with no BEGIN
before it and no ROLLBACK when the connection goes back to the pool; a write opens its own
transaction (`conn.transaction()`).

The statements are still SQLAlchemy Core, compiled once for psycopg (`compile_statement`). What
the engine would do on each execution (bind and result processing by column type) psycopg's own
adapters do: UUIDs, `timestamptz` read in UTC (the sessions' time zone), JSON through orjson.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
import structlog
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import ClauseElement, make_url
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from tasktrail.database import UNAVAILABLE_SQLSTATES, DatabaseUnavailable
from tasktrail.row_security import SET_SCOPE_SQL, DatabaseScope

if TYPE_CHECKING:
    from tasktrail.settings import Settings

AsyncConnection = psycopg.AsyncConnection[tuple[Any, ...]]
# SQLAlchemy's dialect for psycopg: what statements compile for, and how results convert.
DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A Core statement as psycopg runs it: `%(name)s` placeholders and the values that the
    statement itself holds (literals written into it), which `params` fills in."""

    sql: str
    fixed: Mapping[str, Any]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.fixed, **values}


def compile_statement(statement: ClauseElement) -> CompiledStatement:
    """Compile once, at import or first use; never per request (compiling costs more than
    running a simple statement)."""
    compiled = statement.compile(dialect=DIALECT)
    return CompiledStatement(str(compiled), dict(compiled.params))


def conninfo_of(settings: Settings) -> str:
    """libpq's form of the service's URL (SQLAlchemy's `+psycopg` driver name is not libpq's)."""
    url = make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def session_options(settings: Settings) -> str:
    """The same session limits as the sync engine's, and UTC so timestamps come back in UTC."""
    return (
        f"-c statement_timeout={settings.statement_timeout_ms}"
        f" -c lock_timeout={settings.statement_timeout_ms}"
        " -c idle_in_transaction_session_timeout=60000"
        " -c timezone=UTC"
    )


async def _configure(conn: AsyncConnection) -> None:
    # orjson for json and jsonb, on this connection only.
    set_json_dumps(lambda value: orjson.dumps(value).decode(), conn)
    set_json_loads(orjson.loads, conn)


_log = structlog.get_logger("tasktrail.pg_pool")

# A pool that failed is replaced by a fresh one at most this often: psycopg's pool retries a lost
# connection with a backoff that doubles up to minutes, so after an outage it could take longer
# to come back than the database did. A fresh pool connects at once.
RESET_SECONDS = 1.0
_TIMEOUTS = frozenset({"57014", "55P03"})  # query_canceled, lock_not_available


@dataclass(slots=True)
class _LoopPool:
    pool: AsyncConnectionPool[AsyncConnection]
    opened_at: float
    failed: bool = False


class AsyncPool:
    """TASKTRAIL_POOL_SIZE connections; a request that gets none within TASKTRAIL_POOL_TIMEOUT
    is answered 503 (`DatabaseUnavailable`).

    psycopg's pool belongs to the event loop that opened it, so one is opened, on first use, for
    each loop that asks: a served process has one loop and so one pool; a test that serves the
    same app from two loops gets two. After a connection failed (the database went away or
    restarted), the next request, a second later or more, gets a fresh pool: its connections
    are made at once, and none of the old ones, dead or not, is handed out again.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _new_pool(self) -> AsyncConnectionPool[AsyncConnection]:
        settings = self._settings
        return AsyncConnectionPool(
            conninfo_of(settings),
            min_size=settings.pool_size,
            max_size=settings.pool_size,
            timeout=settings.pool_timeout,
            open=False,
            configure=_configure,
            kwargs={
                "autocommit": True,
                "connect_timeout": settings.connect_timeout,
                "options": session_options(settings),
                "application_name": "tasktrail",
            },
            name="tasktrail",
        )

    async def _current(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        current = self._pools.get(loop)
        if current is not None and not (
            current.failed and time.monotonic() - current.opened_at >= RESET_SECONDS
        ):
            return current
        if current is not None:  # failed: closed in the background, its users keep theirs
            closing = loop.create_task(current.pool.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        pool = self._new_pool()
        await pool.open(wait=False)  # a database that is down at start is not fatal
        fresh = self._pools[loop] = _LoopPool(pool, time.monotonic())
        return fresh

    async def close(self) -> None:
        """Close the pool of the running loop (the app's shutdown)."""
        current = self._pools.pop(asyncio.get_running_loop(), None)
        if current is not None:
            await current.pool.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def in_use(self) -> tuple[int, int]:
        """Connections checked out now and the most the pool may hold: the running loop's pool
        (the one that serves the scrape), or none yet."""
        try:
            current = self._pools.get(asyncio.get_running_loop())
        except RuntimeError:  # no loop runs in this thread
            current = None
        if current is None:
            return 0, self._settings.pool_size
        stats = current.pool.get_stats()
        return stats.get("pool_size", 0) - stats.get("pool_available", 0), stats["pool_max"]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one request; outages become `DatabaseUnavailable`, in this one place."""
        current = await self._current()
        try:
            async with current.pool.connection() as conn:
                watchdog = asyncio.get_running_loop().call_later(
                    self._settings.database_deadline, cut_off, conn
                )
                try:
                    yield conn
                finally:
                    watchdog.cancel()
        except PoolTimeout as error:
            current.failed = True
            raise DatabaseUnavailable("no database connection became free in time") from error
        except psycopg.OperationalError as error:
            # A statement or lock timeout says nothing about the connections; anything else of
            # this class (lost connection, shutdown, refused) does.
            if error.sqlstate not in _TIMEOUTS:
                current.failed = True
            raise DatabaseUnavailable(describe_sqlstate(error.sqlstate)) from error
        except psycopg.Error as error:
            if error.sqlstate in UNAVAILABLE_SQLSTATES:
                raise DatabaseUnavailable(describe_sqlstate(error.sqlstate)) from error
            raise

    async def ping(self) -> None:
        """One round trip through the pool (readiness)."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")


async def set_scope(conn: AsyncConnection, scope: DatabaseScope) -> None:
    """Scope the transaction under way (row_security.py): call it first in the transaction."""
    await conn.execute(SET_SCOPE_SQL, scope.parameters())


@asynccontextmanager
async def in_scope(conn: AsyncConnection, scope: DatabaseScope) -> AsyncIterator[None]:
    """Statements in autocommit, run in the scope: the scope and the statements sent in the
    block go in one pipeline, and so in one implicit transaction. Fetch their results after
    the block: its end sends them all with one Sync and reads every result, one round trip
    (and raises a statement's error there). A fetch inside the block costs a round trip more,
    and a write's transaction would stay open across it."""
    async with conn.pipeline():
        await set_scope(conn, scope)
        yield


def cut_off(conn: AsyncConnection) -> None:
    """End a connection whose database has not answered within the deadline.

    A server that hangs (stopped, or behind a partition) still has its kernel acknowledge our
    packets, so no TCP timeout fires, and cancelling the awaiting task makes psycopg try to
    cancel the query on that same server, for seconds more. Shutting the socket down instead
    wakes the read at once with end-of-file: the statement fails as a lost connection (a 503),
    and the pool drops the connection. The socket is shut down through a duplicate of libpq's
    descriptor, which libpq still owns and closes itself.
    """
    try:
        descriptor = conn.pgconn.socket
    except psycopg.OperationalError:
        return  # closed already
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(descriptor)) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)
    _log.warning("the database did not answer in time; connection cut")


def describe_sqlstate(sqlstate: str | None) -> str:
    if sqlstate == "57014":
        return "a statement timed out"
    if sqlstate == "55P03":
        return "a lock was not granted in time"
    return "the database did not answer"
