"""A task's bounds are stated once (domain/state.py): the request bodies and the table module
take them from there. What cannot take them is held to them here: the table module's CHECK text
and its folded copies' room, and the migrated `tasks` table, whose migrations keep the literals
of their day."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from sqlalchemy import CheckConstraint, Engine, String, exc, insert, inspect

from tasktrail.domain.state import DESCRIPTION_MAX, PRIORITY_MAX, PRIORITY_MIN, TITLE_MAX
from tasktrail.projections.inline import task_row
from tasktrail.schema import tasks
from tests.test_document_migration import a_state

# The most characters str.casefold() makes of one.
_WORST_FOLD = max(len(chr(code).casefold()) for code in range(sys.maxunicode + 1))


def _length(column: str) -> int | None:
    kind = tasks.c[column].type
    assert isinstance(kind, String), column
    return kind.length


def test_the_table_module_sizes_the_text_columns_by_the_bounds() -> None:
    assert _length("title") == TITLE_MAX
    assert _length("description") == DESCRIPTION_MAX


@pytest.mark.parametrize(
    ("column", "bound"), [("title", TITLE_MAX), ("description", DESCRIPTION_MAX)]
)
def test_a_folded_copy_has_room_for_the_longest_text_folded(column: str, bound: int) -> None:
    folded = _length(f"{column}_folded")
    assert folded is not None
    assert folded >= _WORST_FOLD * bound


def test_the_table_module_checks_the_priority_bounds() -> None:
    (check,) = (
        constraint
        for constraint in tasks.constraints
        if isinstance(constraint, CheckConstraint) and constraint.name == "ck_tasks_priority"
    )
    assert str(check.sqltext) == f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}"


def test_the_migrated_tasks_table_has_the_text_lengths_of_the_table_module(
    engine: Engine,
) -> None:
    live = {column["name"]: column["type"] for column in inspect(engine).get_columns("tasks")}
    declared = {
        column.name: column.type.length for column in tasks.c if isinstance(column.type, String)
    }
    assert {"title", "title_folded", "description", "description_folded"} <= set(declared)
    for name, length in declared.items():
        assert getattr(live[name], "length", None) == length, name


@pytest.mark.parametrize(
    ("priority", "kept"),
    [
        (PRIORITY_MIN - 1, False),
        (PRIORITY_MIN, True),
        (PRIORITY_MAX, True),
        (PRIORITY_MAX + 1, False),
    ],
)
def test_the_migrated_tasks_table_keeps_only_a_priority_within_the_bounds(
    engine: Engine, priority: int, kept: bool
) -> None:
    """Written and rolled back: the shared database keeps no row that no event made."""
    row = task_row(dataclasses.replace(a_state(1), priority=priority))
    with engine.connect() as conn:
        if kept:
            conn.execute(insert(tasks), row)
        else:
            with pytest.raises(exc.IntegrityError, match="ck_tasks_priority"):
                conn.execute(insert(tasks), row)
        conn.rollback()
