"""The task's fields are declared once (domain/fields.py); what cannot derive from the
declaration is held to it here: the typed state, the table, the request bodies' read-only
fields. The event's fields likewise (domain/event_record.py)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON

from tasktrail.api.contract.schemas import EventOut, TaskCreate, TaskOut, TaskPatch, TaskReplace
from tasktrail.domain.commands import TaskChanges, TaskFields
from tasktrail.domain.document import task_document
from tasktrail.domain.event_data import FieldChanges, TaskCreatedData
from tasktrail.domain.event_record import EVENT_FIELD_NAMES
from tasktrail.domain.events import Event
from tasktrail.domain.fields import (
    EDITABLE_FIELDS,
    EDITABLE_FORMS,
    ROW_COLUMN_NAMES,
    ROW_COLUMNS,
    SERVED_FIELDS,
    STATE_FIELDS,
    Kind,
    TaskField,
)
from tasktrail.domain.state import TaskState
from tasktrail.export import CSV_COLUMNS
from tasktrail.projections.inline import TASK_COLUMNS, task_values
from tasktrail.schema import tasks

_STATE_TYPES: dict[Kind, Any] = {
    Kind.ID: str,
    Kind.TEXT: str,
    Kind.FLAG: bool,
    Kind.INTEGER: int,
    Kind.INSTANT: datetime,
    Kind.STRINGS: tuple[str, ...],
}


def _expected_state_type(field: TaskField) -> Any:
    kind = _STATE_TYPES[field.kind]
    return kind | None if field.nullable else kind


def test_the_state_has_the_declared_fields_in_order_with_their_types() -> None:
    hints = typing.get_type_hints(TaskState)
    names = [field.name for field in dataclasses.fields(TaskState)]
    assert names == [field.name for field in STATE_FIELDS]
    for field in STATE_FIELDS:
        assert hints[field.name] == _expected_state_type(field), field.name


def test_the_table_has_the_declared_columns_in_order() -> None:
    assert tuple(column.name for column in tasks.c) == ROW_COLUMN_NAMES == TASK_COLUMNS
    for field in STATE_FIELDS:
        assert tasks.c[field.name].nullable == field.nullable, field.name


def test_the_json_columns_are_the_list_fields_and_their_folded_copies() -> None:
    """A rebuild's COPY sends the columns of the list kind as JSON text (projections/shadow.py):
    they are the table's JSON columns, and the only ones."""
    json_columns = [column.name for column in tasks.c if isinstance(column.type, JSON)]
    assert json_columns == [name for name, kind in ROW_COLUMNS if kind is Kind.STRINGS]
    assert "tags_folded" in json_columns


def test_the_bodies_accept_and_ignore_exactly_the_served_fields_a_client_may_not_set() -> None:
    served = {field.name for field in SERVED_FIELDS}
    for body in (TaskCreate, TaskReplace, TaskPatch):
        settable = {name for name, info in body.model_fields.items() if not info.exclude}
        ignored = {name for name, info in body.model_fields.items() if info.exclude}
        assert settable | ignored == served, body.__name__
        assert settable == {field.name for field in EDITABLE_FIELDS} | {"completed"}


def test_the_editable_fields_typed_forms_are_the_declared_ones() -> None:
    """A command's changes and a create's fields hold the editable fields in the state's types,
    with the declared defaults (the API requires a title); the events' data holds them in
    their stored forms: an instant as text, the tags as a list."""
    editable = {field.name: field for field in EDITABLE_FIELDS}
    state_types = typing.get_type_hints(TaskState)
    changes = typing.get_type_hints(TaskChanges)
    assert changes == {name: state_types[name] for name in editable}
    fields = {field.name: field for field in dataclasses.fields(TaskFields)}
    assert list(fields) == list(editable)
    assert typing.get_type_hints(TaskFields) == changes
    for name, field in fields.items():
        if name == "title":
            assert field.default is dataclasses.MISSING
        else:
            assert field.default == editable[name].default, name
    stored_types = {Kind.INSTANT: str, Kind.STRINGS: list[str]}
    stored = {
        name: changes[name]
        if field.kind not in stored_types
        else stored_types[field.kind] | None
        if field.nullable
        else stored_types[field.kind]
        for name, field in editable.items()
    }
    assert typing.get_type_hints(FieldChanges) == stored
    assert typing.get_type_hints(TaskCreatedData) == {**stored, "completed": bool}


STATE = TaskState(
    id="0193a5c4-0000-7000-8000-000000000001",
    user_id="u",
    title="Title",
    description=None,
    completed=True,
    due_at=datetime(2031, 1, 1, tzinfo=UTC),
    priority=2,
    tags=("a", "B"),
    created_at=datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
    updated_at=datetime(2026, 1, 2, tzinfo=UTC),
    completed_at=datetime(2026, 1, 2, tzinfo=UTC),
    deleted_at=None,
    version=3,
    last_seq=9,
)


def test_the_document_and_the_schema_serve_the_declared_fields_in_order() -> None:
    document = orjson.loads(task_document(STATE).body)
    names = [field.name for field in SERVED_FIELDS]
    assert list(document) == names
    assert list(TaskOut.model_fields) == names
    assert TaskOut.model_validate(document).model_dump() == document
    required = TaskOut.model_json_schema()["required"]
    assert required == names  # every field present, null where it may be


def test_the_row_has_a_value_per_column_with_the_folded_copies() -> None:
    row = dict(zip(TASK_COLUMNS, task_values(STATE), strict=True))
    assert (row["title_folded"], row["tags"], row["tags_folded"]) == (
        "title",
        ["a", "B"],
        ["a", "b"],
    )
    assert row["description_folded"] is None
    assert row["etag"] == '"3"'


def test_the_events_fields_are_declared_once() -> None:
    assert CSV_COLUMNS == EVENT_FIELD_NAMES
    assert tuple(EventOut.model_fields) == EVENT_FIELD_NAMES
    assert set(EVENT_FIELD_NAMES) == {field.name for field in dataclasses.fields(Event)}


def test_a_body_that_leaves_a_field_out_gives_it_the_declared_default() -> None:
    """A create or a PUT without an optional field gives the task the field's declared default
    (the bodies state their defaults in pydantic's terms: a test holds them to the state's);
    a merge PATCH can name every editable field."""
    for model in (TaskCreate, TaskReplace):
        for forms in EDITABLE_FORMS:
            field = model.model_fields[forms.name]
            if forms.name == "title":
                assert field.is_required(), model
                continue
            left_out = field.get_default(call_default_factory=True)
            declared = next(f for f in EDITABLE_FIELDS if f.name == forms.name).default
            assert forms.from_body(left_out) == declared, (model, forms.name)
    assert {forms.name for forms in EDITABLE_FORMS} <= set(TaskPatch.model_fields)
