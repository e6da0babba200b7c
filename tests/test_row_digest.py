"""The row digest the rebuild checks with: Python (from the fold) and the database (from the
stored row) must agree on every value a row can hold, or a good rebuild would be refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tasktrail.domain.state import TaskState
from tasktrail.projections import shadow
from tasktrail.projections.inline import TASK_COLUMNS, task_values
from tasktrail.projections.row_digest import COLUMN_KINDS, looped_row_digest, row_digest

T = datetime(2026, 11, 25, 9, 30, 15, 123456, tzinfo=UTC)
AWKWARD_TEXT = [
    "plain",
    "pipes | and colons : and tildes ~",
    'quotes " and backslashes \\ and \\"',
    "new\nline, tab\t, carriage\r, bell\x07, escape\x1b",
    "accents é, ß, Ⅻ, combining e\u0301",
    "astral 🎉𝄞",
    "",
]
AWKWARD_TAGS = [
    [],
    ["home"],
    ['a"b', "c\\d", "e\nf", "g\x01h"],
    ["ü", "🎉", "a, b", "[x]", "{}"],
    ["", " "],
]


def awkward_rows() -> list[tuple[Any, ...]]:
    """Rows as the projector writes them (`task_values`): their documents hold the awkward text
    JSON-escaped, raw non-ASCII, astral characters and `null`s."""
    rows = []
    for n, title in enumerate(AWKWARD_TEXT):
        tags = AWKWARD_TAGS[n % len(AWKWARD_TAGS)]
        description = None if n % 2 else title[::-1]
        state = TaskState(
            id=str(uuid.uuid4()),
            user_id=f"user|{n}:~",
            title=title,
            description=description,
            completed=n % 2 == 0,
            due_at=[None, T, datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)][n % 3],
            priority=n % 4,
            tags=tuple(tags),
            created_at=T - timedelta(days=n, microseconds=n),
            updated_at=T,
            completed_at=None if n % 2 else T + timedelta(microseconds=1),
            deleted_at=None if n % 3 else T,
            version=n + 1,
            last_seq=2**40 + n,
        )
        rows.append(task_values(state))
    return rows


def test_the_digest_covers_every_column_of_the_table_in_order() -> None:
    """A column added to `tasks` without a place in the digest would go unchecked."""
    assert tuple(name for name, _ in COLUMN_KINDS) == TASK_COLUMNS


@pytest.mark.parametrize("row", awkward_rows(), ids=lambda row: repr(row[2])[:20])
def test_the_fast_digest_equals_the_one_written_from_the_column_kinds(row: tuple[Any, ...]) -> None:
    assert row_digest(row) == looped_row_digest(row)


def test_a_changed_value_changes_the_digest() -> None:
    """Each column counts, and no value passes for another (a NULL is not an empty text)."""
    row = awkward_rows()[0]
    digests = {row_digest(row)}
    for index, value in enumerate(row):
        changed = list(row)
        changed[index] = (
            None if value is not None and index in (4, 5, 7, 13, 14) else
            T + timedelta(microseconds=7) if isinstance(value, datetime) or index in (7, 13, 14) else
            not value if isinstance(value, bool) else
            value + 1 if isinstance(value, int) else
            [*value, "x"] if isinstance(value, list) else
            f"{value}x"
        )  # fmt: skip
        digests.add(row_digest(changed))
    assert len(digests) == len(row) + 1
    assert row_digest((*row[:4], "", *row[5:])) != row_digest((*row[:4], None, *row[5:]))


def test_the_database_digests_stored_rows_as_python_digests_them(fresh_engine: Engine) -> None:
    """Rows with awkward text, lists, NULLs and instants go into the shadow table; the digests
    read from it (computed by PostgreSQL itself, on SQLite from the row read back) and their
    sum are those of the values written."""
    rows = awkward_rows()
    shadow.create_shadow(fresh_engine)
    try:
        shadow.write_batch(fresh_engine, rows)
        with fresh_engine.connect() as conn:
            stored = dict(shadow.stored_digests(conn, None))
            some = [rows[0][0], rows[3][0]]
            picked = dict(shadow.stored_digests(conn, some))
            if conn.dialect.name == "postgresql":
                total = conn.execute(
                    text(f"SELECT sum({shadow.SQL_DIGEST}) FROM {shadow.SHADOW}")
                ).scalar_one()
                assert int(total) == sum(row_digest(row) for row in rows)
    finally:
        with fresh_engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {shadow.SHADOW}"))
    assert stored == {row[0]: row_digest(row) for row in rows}
    assert picked == {task: stored[task] for task in some}
