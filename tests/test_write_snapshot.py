"""A write decides on the task's read-model row, held to the log, not on a fold of its history.

The row is trusted only when its version is the version of the task's last event; otherwise the
write folds the log, and the row it writes back is the replay again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

import anyio
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event, select, update

from tasktrail.api.app import create_app
from tasktrail.database import write_transaction
from tasktrail.domain.commands import CommandContext, UpdateTask
from tasktrail.domain.evolve import fold
from tasktrail.events.store import read_task_stream
from tasktrail.pg_pool import conninfo_of
from tasktrail.projections.inline import task_row
from tasktrail.schema import tasks
from tasktrail.storage.port import Outcome, Write, Written
from tasktrail.storage.postgres.adapter import write_on_snapshot, write_under_the_lock
from tasktrail.storage.sqlite.transaction import handle
from tests.conftest import Api, new_user_id, service_role_settings
from tests.write_port_helpers import no_key, the_outcome


@contextmanager
def statements_of(engine: Engine) -> Iterator[list[str]]:
    """The SQL the engine sends while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def reads_event_payloads(statement: str) -> bool:
    """A statement that reads events' data: what folding a task's history needs."""
    return statement.lstrip().upper().startswith("SELECT") and "events.data" in statement


def row_is_the_replay(engine: Engine, user_id: str, task_id: str) -> bool:
    with engine.connect() as conn:
        stored = conn.execute(select(tasks).where(tasks.c.id == uuid.UUID(task_id))).one()
        replayed = fold(read_task_stream(conn, user_id, task_id))
    assert replayed is not None
    return dict(stored._mapping) == task_row(replayed)


def long_history(api: Api) -> dict[str, Any]:
    task = api.create(title="long history")
    for n in range(20):
        assert (
            api.request("PATCH", f"/{task['id']}", json={"priority": n % 3 + 1}).status_code == 200
        )
    return task


def rename(api: Api, task_id: str, title: str = "renamed") -> UpdateTask:
    context = CommandContext(user_id=api.user_id, actor=api.user_id, request_id="snapshot-test")
    return UpdateTask(
        context=context,
        task_id=task_id,
        changes={"title": title},
        completed=None,
        expected_versions=None,
    )


def test_a_write_on_a_current_row_reads_no_event_of_the_task(engine: Engine, api: Api) -> None:
    """However long the history, the write reads the row, not the events: its cost stays flat
    (the engine's path: SQLite's, run in a worker thread)."""
    task = long_history(api)
    with statements_of(engine) as sent, write_transaction(engine) as conn:
        outcome = handle(conn, rename(api, task["id"]))
    assert outcome.state is not None
    assert outcome.state.version == 22
    assert sent, "the listener saw no statement"
    assert not [statement for statement in sent if reads_event_payloads(statement)]
    assert row_is_the_replay(engine, api.user_id, task["id"])


class RecordingCursor(psycopg.AsyncCursor[Any]):
    """A real cursor that notes the SQL it sends."""

    sent: ClassVar[list[str]] = []

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
        RecordingCursor.sent.append(str(query))
        return await super().execute(query, params, **kwargs)


def test_postgres_async_write_on_a_current_row_reads_no_event_of_the_task(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """The same on PostgreSQL's adapter, both ways: decided on the snapshot (one call), and
    decided under the lock (the stream first, the row, then the same call)."""
    settings = service_role_settings(postgres_url)
    with TestClient(create_app(settings)) as client:
        api = Api(client, new_user_id())
        task = long_history(api)
    conninfo = conninfo_of(settings)

    async def write() -> list[Outcome]:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            conn.cursor_factory = RecordingCursor
            outcomes = []
            for way in (write_on_snapshot, write_under_the_lock):
                command = rename(api, task["id"], way.__name__)
                written = await way(conn, Write(command, None, the_outcome, no_key))
                assert isinstance(written, Written)
                outcomes.append(written.answer)
            return outcomes

    RecordingCursor.sent.clear()
    outcomes = anyio.run(write)
    assert [outcome.state.version for outcome in outcomes if outcome.state] == [22, 23]
    assert RecordingCursor.sent, "the cursor saw no statement"
    assert not [statement for statement in RecordingCursor.sent if reads_event_payloads(statement)]
    assert row_is_the_replay(postgres_engine, api.user_id, task["id"])


def test_a_missing_row_makes_the_write_fold_the_log_and_restore_it(
    engine: Engine, api: Api
) -> None:
    """With the row gone, the write decides on the log's state and writes the row back."""
    task = api.create(title="kept in the log", tags=["x"])
    api.request("PATCH", f"/{task['id']}/complete")
    with engine.begin() as conn:
        conn.execute(delete(tasks).where(tasks.c.id == uuid.UUID(task["id"])))
    response = api.request("PATCH", f"/{task['id']}", json={"priority": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["completed"], body["tags"], body["version"]) == (
        "kept in the log",
        True,
        ["x"],
        3,
    )
    assert row_is_the_replay(engine, api.user_id, task["id"])


def test_a_stale_row_is_not_trusted(engine: Engine, api: Api) -> None:
    """A row whose version lags the log is ignored: the write decides on the folded state."""
    task = api.create(title="first")
    api.request("PATCH", f"/{task['id']}", json={"title": "second"})
    # The row as it was after the create: an older version with the older title.
    with engine.begin() as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == uuid.UUID(task["id"]))
            .values(title="first", title_folded="first", version=1)
        )
    response = api.request("PATCH", f"/{task['id']}", json={"priority": 3})
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["version"]) == ("second", 3)
    assert row_is_the_replay(engine, api.user_id, task["id"])


def test_a_stale_row_does_not_let_a_stale_if_match_through(engine: Engine, api: Api) -> None:
    """If-Match is held to the log's version, not to a lagging row's."""
    task = api.create(title="guarded")
    api.request("PATCH", f"/{task['id']}", json={"title": "moved on"})
    with engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(task["id"])).values(version=1))
    response = api.request(
        "PATCH", f"/{task['id']}", json={"title": "late"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 412, response.text
    with engine.begin() as conn:  # leave the shared database's read model as the log says
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(task["id"])).values(version=2))
    assert row_is_the_replay(engine, api.user_id, task["id"])
