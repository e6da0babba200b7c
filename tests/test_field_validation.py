"""Input rules of api.md for body fields: strict types, unknown and read-only fields, limits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api
from tests.validation_helpers import assert_problem, error_locs

MISSING: Any = object()  # a field left out of the body


# --- strict types ---------------------------------------------------------------------------

STRICT = {
    "title-int": ("title", 5),
    "title-bool": ("title", True),
    "completed-true-string": ("completed", "true"),
    "completed-yes": ("completed", "yes"),
    "completed-one": ("completed", 1),
    "priority-float": ("priority", 1.5),
    "priority-string": ("priority", "2"),
    "priority-bool": ("priority", True),
    "priority-whole-float": ("priority", 2.0),
    "tags-string": ("tags", "x"),
    "tags-of-int": ("tags", [1]),
    "description-int": ("description", 5),
    "due_at-number": ("due_at", 1700000000),
}


@pytest.mark.parametrize("method", ["POST", "PATCH"], ids=["post", "patch"])
@pytest.mark.parametrize(("field", "value"), list(STRICT.values()), ids=list(STRICT))
def test_a_wrongly_typed_field_is_422(api: Api, method: str, field: str, value: Any) -> None:
    """Types are strict on POST and PATCH: no coercion; a patched task stays unchanged."""
    created = api.create()
    suffix = "" if method == "POST" else f"/{created['id']}"
    locs = error_locs(api.request(method, suffix, json={"title": "t", field: value}))
    assert all(loc[:2] == ["body", field] for loc in locs), locs
    assert api.get(created["id"]).json() == created


@pytest.mark.parametrize(
    "body",
    [{"completed": "true"}, {"completed": 1}, {"completed": None}, {"done": True}],
    ids=["string", "int", "null", "unknown-field"],
)
def test_a_bad_completion_body_is_422(api: Api, body: dict[str, Any]) -> None:
    """PATCH .../complete takes {"completed": true|false}, or `{}` (a toggle), nothing else."""
    task_id = api.create()["id"]
    assert_problem(api.request("PATCH", f"/{task_id}/complete", json=body), 422)
    assert api.get(task_id).json()["version"] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"], ids=["post", "put", "patch"])
def test_an_unknown_field_is_422(api: Api, method: str) -> None:
    """A body field the contract does not know is 422, located at the field."""
    suffix = "" if method == "POST" else f"/{api.create()['id']}"
    response = api.request(method, suffix, json={"title": "t", "colour": "red"})
    assert error_locs(response) == [["body", "colour"]]


# --- read-only fields -----------------------------------------------------------------------

READ_ONLY = {
    "id": "not-even-a-uuid",
    "user_id": "someone-else",
    "status": "completed",
    "created_at": "1999-01-01T00:00:00.000000Z",
    "updated_at": "garbage",
    "completed_at": "2000-01-01T00:00:00Z",
    "version": 99,
}


def test_read_only_fields_are_ignored_on_create(api: Api) -> None:
    """POST accepts the read-only fields and ignores them."""
    body = api.create(title="t", **READ_ONLY)
    assert uuid.UUID(body["id"]).version == 7
    assert body["user_id"] == api.user_id
    assert body["status"] == "pending"
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["created_at"] != READ_ONLY["created_at"]
    assert body["version"] == 1


def test_a_whole_get_body_can_be_sent_back_with_put(api: Api) -> None:
    """PUT takes back what GET gave, with one field edited."""
    task = api.create(title="t", description="d", tags=["a"], priority=2)
    response = api.request("PUT", f"/{task['id']}", json={**task, "title": "edited"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        **task,
        "title": "edited",
        "version": 2,
        "updated_at": response.json()["updated_at"],
    }


def test_read_only_fields_in_put_and_patch_change_nothing(api: Api) -> None:
    """Read-only fields alone in PUT/PATCH are ignored: no event, status not touched."""
    task = api.create(title="t")
    for method in ("PATCH", "PUT"):
        response = api.request(method, f"/{task['id']}", json={"title": "t", **READ_ONLY})
        assert response.status_code == 200, response.text
        assert response.json() == task
    assert len(api.history(task["id"])) == 1


# --- field rules ----------------------------------------------------------------------------

TWENTY_TAGS = [f"{n:02d}" + "t" * 48 for n in range(20)]
ACCEPTED = {
    "title-trimmed": ("title", "  Buy milk\n\t", "Buy milk"),
    "title-200": ("title", "a" * 200, "a" * 200),
    "title-200-after-trim": ("title", "  " + "a" * 200 + "  ", "a" * 200),
    "title-200-emoji": ("title", "😀" * 200, "😀" * 200),
    "title-200-accented": ("title", "é" * 200, "é" * 200),
    "description-1000": ("description", "ü" * 1000, "ü" * 1000),
    "description-null": ("description", None, None),
    "priority-0": ("priority", 0, 0),
    "priority-3": ("priority", 3, 3),
    "tags-20-of-50": ("tags", TWENTY_TAGS, TWENTY_TAGS),
    "tags-deduplicated": ("tags", ["Home", "work", "home", "WORK", "x"], ["Home", "work", "x"]),
    "tags-casefolded": ("tags", ["Straße", "STRASSE"], ["Straße"]),
    "due_at-utc": ("due_at", "2026-11-24T10:15:00Z", "2026-11-24T10:15:00.000000Z"),
    "due_at-offset": ("due_at", "2026-11-24T12:15:00+02:00", "2026-11-24T10:15:00.000000Z"),
    "due_at-odd-offset": ("due_at", "2026-11-24T10:15:00.5-03:30", "2026-11-24T13:45:00.500000Z"),
    "due_at-six-digits": ("due_at", "2026-11-24T10:15:00.123456Z", "2026-11-24T10:15:00.123456Z"),
    "due_at-year-one": ("due_at", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
    "due_at-null": ("due_at", None, None),
}
REJECTED = {
    "title-missing": ("title", MISSING),
    "title-empty": ("title", ""),
    "title-blank": ("title", " \n\t "),
    "title-201": ("title", "a" * 201),
    "title-201-emoji": ("title", "😀" * 201),
    "title-nul": ("title", "a\u0000b"),
    "description-1001": ("description", "d" * 1001),
    "description-nul": ("description", "a\u0000b"),
    "priority-4": ("priority", 4),
    "priority-minus-1": ("priority", -1),
    "priority-huge": ("priority", 2**70),
    "tags-21": ("tags", [f"t{n}" for n in range(21)]),
    "tags-51-chars": ("tags", ["x" * 51]),
    "tags-empty-tag": ("tags", [""]),
    "tags-blank-tag": ("tags", ["   "]),
    "tags-nul": ("tags", ["ok", "a\u0000b"]),
    "due_at-naive": ("due_at", "2026-11-24T10:15:00"),
    "due_at-date-only": ("due_at", "2026-11-24"),
    "due_at-seven-digits": ("due_at", "2026-11-24T10:15:00.1234567Z"),
    "due_at-seven-digits-offset": ("due_at", "2026-11-24T10:15:00.1234567+01:00"),
    "due_at-garbage": ("due_at", "garbage"),
    "due_at-empty": ("due_at", ""),
    "due_at-month-13": ("due_at", "2026-13-01T00:00:00Z"),
    "due_at-feb-30": ("due_at", "2026-02-30T00:00:00Z"),
    "due_at-past-9999-in-utc": ("due_at", "9999-12-31T23:00:00-05:00"),
}


@pytest.mark.parametrize(("field", "sent", "kept"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_a_value_within_the_rules_is_stored_normalised(
    api: Api, field: str, sent: Any, kept: Any
) -> None:
    """Values within the rules are accepted: trimmed, deduplicated, due_at in UTC with six digits."""
    fields = {"title": "t", field: sent}
    assert api.create(**fields)[field] == kept


@pytest.mark.parametrize(("field", "value"), list(REJECTED.values()), ids=list(REJECTED))
def test_a_value_outside_the_rules_is_422_at_its_field(api: Api, field: str, value: Any) -> None:
    """Lengths (code points, after trimming), ranges, tags, due_at and NUL are checked: 422."""
    body = {"title": "t", field: value}
    if value is MISSING:
        del body[field]
    locs = error_locs(api.request("POST", json=body))
    assert all(loc[:2] == ["body", field] for loc in locs), locs


def test_put_without_a_title_is_422(api: Api) -> None:
    """PUT replaces, so it needs a title like POST does."""
    task_id = api.create()["id"]
    assert error_locs(api.request("PUT", f"/{task_id}", json={})) == [["body", "title"]]
