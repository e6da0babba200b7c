"""Verify the read model: replay the log and diff it with the `tasks` table, task by task.

Both sides are streamed in task-id order and merged, so memory stays flat however long the log:
the events by (task_id, version) through the rebuild's reader (replay.py), the rows by id with a
server-side cursor.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from tasktrail.projections.inline import task_row
from tasktrail.projections.replay import replayed_tasks
from tasktrail.schema import tasks

_BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Drift:
    """A task whose row is not what the log says: which fields, or that a side is missing."""

    task_id: str
    fields: tuple[str, ...] = ()
    missing_row: bool = False
    row_without_events: bool = False

    def describe(self) -> str:
        if self.missing_row:
            return f"task {self.task_id}: the log has it, the tasks table does not"
        if self.row_without_events:
            return f"task {self.task_id}: in the tasks table, but the log has no such task"
        return f"task {self.task_id}: {', '.join(self.fields)} differ from the replay"


@dataclass
class VerifyCount:
    tasks: int = 0


def diff_read_model(engine: Engine, count: VerifyCount | None = None) -> Iterator[Drift]:
    """Every difference between the `tasks` table and a replay of the log."""
    tally = count if count is not None else VerifyCount()
    with engine.connect() as log_conn, engine.connect() as model_conn:
        expected = _replayed_rows(log_conn)
        actual = _stored_rows(model_conn)
        want = next(expected, None)
        have = next(actual, None)
        while want is not None or have is not None:
            if want is not None and (have is None or want["id"] < have["id"]):
                tally.tasks += 1
                yield Drift(str(want["id"]), missing_row=True)
                want = next(expected, None)
            elif have is not None and (want is None or have["id"] < want["id"]):
                yield Drift(str(have["id"]), row_without_events=True)
                have = next(actual, None)
            elif want is not None and have is not None:  # the same task on both sides
                tally.tasks += 1
                differing = tuple(name for name in want if want[name] != have.get(name))
                if differing:
                    yield Drift(str(want["id"]), fields=differing)
                want, have = next(expected, None), next(actual, None)


def _replayed_rows(conn: Connection) -> Iterator[dict[str, Any]]:
    for _, state, _ in replayed_tasks(conn):  # the rebuild's reader, in task-id order
        if state is not None:
            yield task_row(state)


def _stored_rows(conn: Connection) -> Iterator[dict[str, Any]]:
    rows = conn.execution_options(yield_per=_BATCH).execute(select(tasks).order_by(tasks.c.id))
    for row in rows:
        stored = dict(row._mapping)
        stored["id"] = uuid.UUID(str(stored["id"]))
        yield stored
