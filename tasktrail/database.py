"""Engines for both databases, set up as architecture.md says, and the one seam for outages.

The service is synchronous end to end: plain `def` routes on a sync engine. Measured on this
machine's create path (docs/decisions.md), async SQLAlchemy gave the same throughput with a p99
two to three times worse at 100 connections, because one Python process is CPU-bound either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, Table, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from tasktrail.row_security import NO_SCOPE, SET_SCOPE_SQL, current_scope

if TYPE_CHECKING:  # only a type here: the rebuild's workers need no settings (0.2 s to import)
    from tasktrail.settings import Settings

# SQLite writers begin with BEGIN IMMEDIATE, so the read of user_streams happens inside the
# write lock; a connection opened with this execution option asks for that.
_IMMEDIATE = "tasktrail_sqlite_immediate"
SQLITE_BUSY_TIMEOUT_MS = 5_000

# SQLSTATEs that mean "the database cannot serve this now", not "the request is wrong":
# query_canceled (statement_timeout), lock_not_available (lock_timeout), admin/crash shutdown,
# cannot_connect_now, too_many_connections, idle-in-transaction timeout.
UNAVAILABLE_SQLSTATES = frozenset({"57014", "55P03", "57P01", "57P02", "57P03", "53300", "25P03"})


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns (event data, tags) through orjson: several times faster than the standard
# library, on every read of the log and the read model. Hashes never depend on this text:
# they are taken over the canonical encoding of the decoded value.
_JSON_CODEC: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


class DatabaseUnavailable(Exception):
    """The database did not answer in time, or refused for its own reasons: retry later."""


def create_database_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return _postgres_engine(url, settings)


def _postgres_engine(url: URL, settings: Settings) -> Engine:
    options = f"-c statement_timeout={settings.statement_timeout_ms} -c lock_timeout={settings.statement_timeout_ms}"
    # idle_in_transaction_session_timeout: a stuck client of ours must not hold row locks (and
    # the feed's horizon) forever.
    options += " -c idle_in_transaction_session_timeout=60000"
    engine = create_engine(
        url,
        **_JSON_CODEC,
        hide_parameters=True,  # an error's text is logged: task titles must not be in it
        pool_size=settings.pool_size,
        max_overflow=0,  # bounded: TASKTRAIL_POOL_SIZE connections per process, never more
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=False,  # a dead connection is detected on use and the pool is recycled
        connect_args={
            "connect_timeout": settings.connect_timeout,
            "options": options,
            "application_name": "tasktrail",
        },
    )

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Every transaction of a request reaches only its scope's rows (row_security.py). A
        # transaction with no scope (the operator's commands, run as the owner) sets nothing.
        scope = current_scope()
        if scope != NO_SCOPE:
            connection.exec_driver_sql(SET_SCOPE_SQL, scope.parameters())

    return engine


def _sqlite_engine(url: URL, settings: Settings) -> Engine:
    engine = create_engine(
        url,
        **_JSON_CODEC,
        hide_parameters=True,  # an error's text is logged: task titles must not be in it
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        # SQLAlchemy's documented recipe: switch pysqlite's own implicit BEGIN off and emit ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA synchronous=FULL",  # an acknowledged write survives a power cut
            "PRAGMA foreign_keys=ON",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def writing(engine: Engine) -> Engine:
    """The engine whose transactions write: on SQLite they begin with BEGIN IMMEDIATE."""
    return engine.execution_options(**{_IMMEDIATE: True})


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """The one transaction of a write: commits when the block ends, rolls back on any error."""
    with unavailable_on_outage(), writing(engine).begin() as conn:
        yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; whatever it began is rolled back when the block ends."""
    with unavailable_on_outage(), engine.connect() as conn:
        yield conn


@contextmanager
def snapshot_connection(engine: Engine) -> Iterator[Connection]:
    """A read connection whose statements all see one snapshot.

    For reads that must agree with each other (a chain and the head recorded for it). SQLite's
    deferred read transaction is a snapshot already; PostgreSQL needs REPEATABLE READ.
    """
    with unavailable_on_outage(), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


@contextmanager
def unavailable_on_outage() -> Iterator[None]:
    """Translate the driver's outage errors into `DatabaseUnavailable`, in this one place."""
    try:
        yield
    except exc.TimeoutError as error:  # the pool had no connection within pool_timeout
        raise DatabaseUnavailable("no database connection became free in time") from error
    except exc.DBAPIError as error:
        if is_outage(error):
            raise DatabaseUnavailable(_describe(error)) from error
        raise


# SQLite's primary result codes that mean "the database cannot serve now", not "this statement
# is wrong": BUSY, LOCKED, IOERR, FULL, CANTOPEN. Python's sqlite3 raises OperationalError for
# these and for many plain errors too ("Expression tree is too large", "no such table"), which
# are bugs to report, not outages to retry.
_SQLITE_OUTAGE_CODES = frozenset({5, 6, 10, 13, 14})


def is_outage(error: exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _SQLITE_OUTAGE_CODES  # the extended code's primary part
    if isinstance(error, exc.OperationalError):
        return True
    return getattr(error.orig, "sqlstate", None) in UNAVAILABLE_SQLSTATES


def _describe(error: exc.DBAPIError) -> str:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate == "57014":
        return "a statement timed out"
    if sqlstate == "55P03":
        return "a lock was not granted in time"
    if "locked" in str(error.orig):
        return "the database is busy"
    return "the database did not answer"


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT: both engines spell it alike, SQLAlchemy does not."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
