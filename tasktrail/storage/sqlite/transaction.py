"""A write's transaction on a SQLAlchemy connection: take the stream, decide, append, project.

`handle` takes a connection inside a transaction that its caller opened (`write_transaction`)
and never commits: take the user's stream, read the clock, read the task's state (its
read-model row, held to the stream's version), decide, append, project. The caller's block
commits it all together or nothing. The SQLite adapter (adapter.py) runs it with the key's
claim and record around it; the service never runs it on PostgreSQL, whose adapter applies a
write through `tasktrail_append` (storage/postgres/), but tests and benchmarks use it there to
lay down a history quickly, on the same tables.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tasktrail.domain.commands import Command, CreateTask
from tasktrail.events.store import append, lock_user_stream
from tasktrail.projections import inline
from tasktrail.projections.snapshot import task_snapshot
from tasktrail.storage.decision import decision
from tasktrail.storage.port import Clock, Outcome, system_clock


def handle(conn: Connection, command: Command, clock: Clock = system_clock) -> Outcome:
    """Any command: take the stream, read the task, decide, append, project."""
    context = command.context
    head = lock_user_stream(conn, context.user_id)
    now = clock()  # after the lock, so that occurred_at follows the order writes are applied in
    # A new task's id was made by the server a moment ago: it has nothing to read. Any other
    # command decides on the task's row, held to the stream's version: a write costs the same
    # on a task with ten thousand events as on a fresh one.
    state = (
        None
        if isinstance(command, CreateTask)
        else task_snapshot(conn, context.user_id, command.task_id)
    )
    decided = decision(command, state, head, now)
    if decided.state is None or not decided.events:
        return decided
    outcome = Outcome(decided.state, append(conn, head, decided.events))
    inline.apply(conn, decided.state, outcome.document)
    return outcome
