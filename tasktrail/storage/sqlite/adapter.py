"""The write port on SQLite: the key's claim, the command and the key's record in one
transaction on the sync engine, run in a worker thread within the database's deadline."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Engine

from tasktrail.database import write_transaction
from tasktrail.storage.port import (
    Clock,
    StoredAnswer,
    Write,
    Written,
    system_clock,
)
from tasktrail.storage.sqlite.keys import claim as claim_key
from tasktrail.storage.sqlite.keys import record
from tasktrail.storage.sqlite.transaction import handle
from tasktrail.storage.threads import in_worker_thread

R = TypeVar("R")


class SqliteWrites:
    def __init__(self, engine: Engine, deadline: float, clock: Clock = system_clock) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError(f"SqliteWrites needs a SQLite engine, not {engine.dialect.name}")
        self._engine = engine
        self._deadline = deadline
        self._clock = clock

    async def write(self, write: Write[R]) -> Written[R] | StoredAnswer:
        return await in_worker_thread(self._deadline, self._write, write)

    def _write(self, write: Write[R]) -> Written[R] | StoredAnswer:
        user_id, claim = write.command.context.user_id, write.claim
        with write_transaction(self._engine) as conn:
            if (
                claim is not None
                and (stored := claim_key(conn, user_id, claim, self._clock)) is not None
            ):
                return stored
            outcome = handle(conn, write.command, self._clock)
            answer = write.respond(outcome)
            if claim is not None:
                record(conn, user_id, claim.key, write.keep(answer))
        return Written(answer, outcome.events)
