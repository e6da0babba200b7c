"""The write port on PostgreSQL: a write decided on a snapshot and applied in one call, or, when
that snapshot moved, decided again under the user's stream lock and applied by the same call.

The first try reads the task's row without a lock (none for a create), decides, and sends the
result to `tasktrail_append` in autocommit: one round trip for a create, two for the rest, and
the user's stream is held for that one call only. It gives way (nothing written) when the row
moved meanwhile, when the row is not the fold of the log, or when a keyed write is refused, since
its key may hold an answer to replay. The second try is a transaction, sent as a pipeline: the
key's claim first (its kept answer ends the write), then the stream's lock and the task's row in
one round trip, the decision under the lock, and `tasktrail_append` with the COMMIT.
"""

from __future__ import annotations

from typing import TypeVar

from tasktrail.domain.errors import DomainError
from tasktrail.pg_pool import AsyncConnection, AsyncPool, set_scope
from tasktrail.row_security import DatabaseScope
from tasktrail.storage.port import (
    WAIT_FOR_FIRST_MS,
    Clock,
    StoredAnswer,
    Write,
    Written,
    system_clock,
)
from tasktrail.storage.postgres import append, decided

R = TypeVar("R")


class PostgresWrites:
    def __init__(
        self, pool: AsyncPool, clock: Clock = system_clock, wait_ms: int = WAIT_FOR_FIRST_MS
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._wait_ms = wait_ms  # for a key's first request (`key_wait_ms`)

    async def write(self, write: Write[R]) -> Written[R] | StoredAnswer:
        async with self._pool.connection() as conn:
            return await write_on(conn, write, self._clock, self._wait_ms)


async def write_on(
    conn: AsyncConnection,
    write: Write[R],
    clock: Clock = system_clock,
    wait_ms: int = WAIT_FOR_FIRST_MS,
) -> Written[R] | StoredAnswer:
    """The port's write on a connection in autocommit: on the snapshot, else under the lock."""
    written = await write_on_snapshot(conn, write, clock, wait_ms)
    if written is not None:
        return written
    return await write_under_the_lock(conn, write, clock, wait_ms)


async def write_on_snapshot(
    conn: AsyncConnection,
    write: Write[R],
    clock: Clock = system_clock,
    wait_ms: int = WAIT_FOR_FIRST_MS,
) -> Written[R] | StoredAnswer | None:
    """Decided on the unlocked row and applied in one call; None to decide under the lock."""
    claim = write.claim
    try:
        on_snapshot = await decided.on_snapshot(conn, write.command, clock)
        if on_snapshot is None:
            return None
        answer = write.respond(on_snapshot.outcome)
    except DomainError:
        if claim is not None:
            return None  # a retry of a write that succeeded: its key replays the answer
        raise
    if claim is None and not on_snapshot.outcome.events:
        return Written(answer, [])  # nothing to append and no key to keep: a read was enough
    try:
        applied = await append.apply(conn, on_snapshot, claim, write.kept(answer), wait_ms)
    except append.SnapshotMoved:
        return None
    if isinstance(applied, StoredAnswer):
        return applied
    return Written(answer, applied.events)


async def write_under_the_lock(
    conn: AsyncConnection,
    write: Write[R],
    clock: Clock = system_clock,
    wait_ms: int = WAIT_FOR_FIRST_MS,
) -> Written[R] | StoredAnswer:
    """The key's claim, then the stream's lock and the decision, then the call, with COMMIT."""
    user_id, claim = write.command.context.user_id, write.claim
    with append.refusals():
        async with conn.pipeline():
            async with conn.transaction():
                await set_scope(conn, DatabaseScope(user_id=user_id))
                # The key before the stream: every keyed write takes its locks in that order.
                if claim is not None:
                    stored = await append.claim_key(conn, user_id, claim, wait_ms)
                    if stored is not None:
                        return stored
                locked = await decided.under_the_lock(conn, write.command, clock)
                answer = write.respond(locked.outcome)
                if claim is None and not locked.outcome.events:
                    return Written(answer, [])
                call = await append.send(conn, locked, claim, write.kept(answer), wait_ms)
            # Committed: the call's answer came back with the COMMIT's.
            applied = await append.result(call, locked)
    if isinstance(applied, StoredAnswer):
        raise RuntimeError("a key claimed under the lock was found taken")
    return Written(answer, applied.events)
