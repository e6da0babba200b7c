"""Migration 0009 gives the rows that existed before it the document the projector writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, exc, insert, inspect, select

from tasktrail.domain.state import TaskState
from tasktrail.migrations import runner
from tasktrail.projections.inline import task_row
from tasktrail.schema import tasks

# More than two batches of the migration's 2 000 rows.
ROWS = 4_321
T = datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC)


def migrate(conn: Connection, direction: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(runner.__file__).parent))
    config.attributes["connection"] = conn
    getattr(command, direction)(config, revision)


def a_state(n: int) -> TaskState:
    return TaskState(
        id=str(uuid.uuid4()),
        user_id=f"user-{n % 7}",
        title=["plain", "Ünïcödé ☕ 🎉", 'quote " back \\ slash', "tab\tnew\nline"][n % 4],
        description=None if n % 3 else f"description {n} é",
        completed=n % 2 == 0,
        due_at=None if n % 5 else T + timedelta(days=n),
        priority=n % 4,
        tags=(("home", "Work", "ü") if n % 2 else ()),
        created_at=T - timedelta(seconds=n),
        updated_at=T,
        completed_at=T if n % 2 == 0 else None,
        deleted_at=T if n % 11 == 0 else None,
        version=n % 9 + 1,
        last_seq=n + 1,
    )


def documents(engine: Engine) -> dict[uuid.UUID, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(tasks.c.id, tasks.c.body, tasks.c.etag))
        return {row.id: (row.body, row.etag) for row in rows}


def test_the_migration_fills_every_existing_row_with_the_projectors_document(
    fresh_engine: Engine,
) -> None:
    """Rows of a database at 0008 get the body and ETag the projector writes, batch after
    batch, and the columns end NOT NULL; going down and up again keeps the table's indexes."""
    with fresh_engine.begin() as conn:
        conn.execute(insert(tasks), [task_row(a_state(n)) for n in range(ROWS)])
    written = documents(fresh_engine)
    indexes = {index["name"] for index in inspect(fresh_engine).get_indexes("tasks")}
    with fresh_engine.begin() as conn:
        migrate(conn, "downgrade", "0008")
    fresh_engine.dispose()
    assert {"body", "etag"}.isdisjoint(
        c["name"] for c in inspect(fresh_engine).get_columns("tasks")
    )

    with fresh_engine.begin() as conn:
        migrate(conn, "upgrade", "head")
    fresh_engine.dispose()
    assert documents(fresh_engine) == written
    columns = {column["name"]: column for column in inspect(fresh_engine).get_columns("tasks")}
    assert (columns["body"]["nullable"], columns["etag"]["nullable"]) == (False, False)
    assert {index["name"] for index in inspect(fresh_engine).get_indexes("tasks")} == indexes


@pytest.mark.parametrize("column", ["body", "etag"])
def test_a_row_without_its_document_is_refused(engine: Engine, column: str) -> None:
    """body and etag are NOT NULL: a writer that forgot them fails instead of serving nothing."""
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert(tasks), {**task_row(a_state(1)), column: None})
