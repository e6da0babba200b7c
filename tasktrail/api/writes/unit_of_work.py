"""The unit of work of a write: one transaction holds the command's events, the task's row and
the idempotency record, so they commit together or not at all.

On PostgreSQL it runs on the event loop through the async pool. A write is first decided on the
task's row, read without a lock, and applied in one call that takes the user's stream, checks
the row still holds, appends, projects and keeps the key's answer (commands/in_one_round_trip.py):
one round trip for a create, two for the rest. When the row moved meanwhile, when it is not the
fold of the log, or when a keyed write is refused (the key may hold an answer to replay), the
write runs the long way, in a pipeline: the claim of the key, the user's stream lock and the
task's row in the first round trip, the events, the row and the record with the COMMIT
(commands/on_postgres.py). On SQLite the same steps run on the
sync engine in a worker thread (`BEGIN IMMEDIATE`: SQLite serialises writers anyway). The answer
is built inside the transaction, from the state the write left, and sent only once the COMMIT
has returned: an acknowledged write is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import psycopg
from fastapi import Request
from sqlalchemy import Engine
from starlette.responses import Response

from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.problems import Problem
from tasktrail.api.services import services
from tasktrail.api.writes.idempotency import (
    IdempotencyKey,
    answer_to_keep,
    claim,
    claim_on_postgres,
    fingerprint,
    record,
    record_on_postgres,
    replay,
    replay_on_postgres,
    still_running,
    stored_replay,
)
from tasktrail.commands import handlers
from tasktrail.commands.errors import DomainError
from tasktrail.commands.handlers import Outcome
from tasktrail.commands.in_one_round_trip import (
    KEY_IN_USE,
    SnapshotMoved,
    StoredAnswer,
    apply_decided,
    decide_on_snapshot,
)
from tasktrail.commands.on_postgres import handle_on_postgres
from tasktrail.commands.types import Command
from tasktrail.database import write_transaction
from tasktrail.pg_pool import AsyncConnection, AsyncPool, set_scope
from tasktrail.row_security import DatabaseScope

# What the route answers for the state the write left (the task, or 204).
Respond = Callable[[Outcome], Response]


async def run_write(
    request: Request, command: Command, key: IdempotencyKey | None, respond: Respond
) -> Response:
    """Run the command in one transaction; with a key, replay or record its answer in it too."""
    parts = services(request)
    pool = parts.pool
    keyed = None if key is None else Keyed(key.value, fingerprint(request))
    if pool is not None:
        response, appended = await _on_postgres(pool, command, keyed, respond)
    else:
        response, appended = await in_thread(
            request, _in_thread, parts.engine, command, keyed, respond
        )
    parts.metrics.events_appended.inc(appended)  # counted once committed
    if appended:
        hub = parts.feed_hub
        hub.announce(command.context.user_id)  # live feeds, after the COMMIT
    return response


class Keyed(NamedTuple):
    """A write with an Idempotency-Key: the key and the request it first came with."""

    key: str
    fingerprint: str


async def _on_postgres(
    pool: AsyncPool, command: Command, keyed: Keyed | None, respond: Respond
) -> tuple[Response, int]:
    async with pool.connection() as conn:
        written = await _in_one_round_trip(conn, command, keyed, respond)
        if written is not None:
            return written
        return await _the_long_way(conn, command, keyed, respond)


async def _in_one_round_trip(
    conn: AsyncConnection, command: Command, keyed: Keyed | None, respond: Respond
) -> tuple[Response, int] | None:
    """Decide on the unlocked row, apply in one call; None to go the long way."""
    try:
        decided = await decide_on_snapshot(conn, command)
        if decided is None:
            return None
        response = respond(decided.outcome)
    except (DomainError, Problem):
        if keyed is not None:
            return None  # a retry of a write that succeeded: the long way replays its answer
        raise
    if keyed is None and not decided.events:
        return response, 0  # nothing to append and no key to keep: a read was enough
    keep = None if keyed is None else answer_to_keep(keyed.key, keyed.fingerprint, response)
    try:
        applied = await apply_decided(conn, decided, keep)
    except SnapshotMoved:
        return None
    except psycopg.Error as error:
        if error.sqlstate == KEY_IN_USE:
            raise still_running() from None
        raise
    if isinstance(applied, StoredAnswer):
        if keyed is None:
            raise RuntimeError("a write without a key found a stored answer")
        return stored_replay(applied, keyed.fingerprint), 0
    return response, len(applied.events)


async def _the_long_way(
    conn: AsyncConnection, command: Command, keyed: Keyed | None, respond: Respond
) -> tuple[Response, int]:
    """Take the stream first, then decide under it (a pipelined transaction of two round
    trips): a write whose snapshot moved, or whose row is not the fold of the log."""
    user_id = command.context.user_id
    async with conn.pipeline(), conn.transaction():
        await set_scope(conn, DatabaseScope(user_id=user_id))
        if keyed is not None and not await claim_on_postgres(conn, user_id, *keyed):
            return await replay_on_postgres(conn, user_id, *keyed), 0
        outcome = await handle_on_postgres(conn, command)
        response = respond(outcome)
        if keyed is not None:
            await record_on_postgres(conn, user_id, keyed.key, response)
    return response, len(outcome.events)


def _in_thread(
    engine: Engine, command: Command, keyed: Keyed | None, respond: Respond
) -> tuple[Response, int]:
    user_id = command.context.user_id
    with write_transaction(engine) as conn:
        if keyed is not None and not claim(conn, user_id, *keyed):
            return replay(conn, user_id, *keyed), 0
        outcome = handlers.handle(conn, command)
        response = respond(outcome)
        if keyed is not None:
            record(conn, user_id, keyed.key, response)
    return response, len(outcome.events)
