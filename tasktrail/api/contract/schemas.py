"""Request and response bodies, as the contract fixes them.

Bodies are validated from the raw JSON text in pydantic's strict JSON mode: `"yes"` or `1` is not
a boolean, `1.5` or `"2"` not an integer, a number not a string, while a timestamp arrives as the
RFC 3339 text it must be.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from tasktrail.domain.encoding import RFC3339_PATTERN, parse_timestamp
from tasktrail.domain.event_record import EVENT_FIELDS
from tasktrail.domain.fields import SERVED_FIELDS, Kind, TaskField
from tasktrail.domain.state import (
    DESCRIPTION_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TAGS_MAX,
    TITLE_MAX,
)

# Re-exported: the list's `tag` filter takes a tag of the same length (api/routes/task_list.py).
from tasktrail.domain.state import TAG_MAX as TAG_MAX


def _storable(text: str) -> str:
    """PostgreSQL cannot store U+0000 or a lone surrogate; refuse them on both engines."""
    if "\x00" in text:
        raise ValueError("text must not contain U+0000 (NUL)")
    if any("\ud800" <= char <= "\udfff" for char in text):
        raise ValueError("text must not contain an unpaired UTF-16 surrogate")
    return text


def _title(text: str) -> str:
    text = _storable(text).strip()
    if not text:
        raise ValueError("title must not be blank")
    if len(text) > TITLE_MAX:
        raise ValueError(f"title must be at most {TITLE_MAX} characters (it has {len(text)})")
    return text


def _description(text: str) -> str:
    text = _storable(text).strip()
    if len(text) > DESCRIPTION_MAX:
        raise ValueError(
            f"description must be at most {DESCRIPTION_MAX} characters (it has {len(text)})"
        )
    return text


def _tags(tags: list[str]) -> list[str]:
    """Trimmed, case-insensitive duplicates dropped (the first spelling wins), order kept."""
    kept: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = _storable(raw).strip()
        if not 1 <= len(tag) <= TAG_MAX:
            raise ValueError(f"each tag must be 1 to {TAG_MAX} characters after trimming")
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            kept.append(tag)
    if len(kept) > TAGS_MAX:
        raise ValueError(f"a task has at most {TAGS_MAX} tags")
    return kept


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 timestamp string with a time zone")
    return parse_timestamp(value)


# What str.strip() trims (str.isspace), spelled out: a pattern's `\s` differs between regex
# dialects (ECMA's leaves out U+001C..U+001F and U+0085, and takes U+FEFF).
_SPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _trimmed_text(low: int, high: int) -> str:
    """A pattern for text without U+0000 whose length after trimming is `low` (0 or 1) to `high`:
    the document says what the validators above accept, so a generated body meets the same rule."""
    solid = rf"[^{_SPACE}\u0000]"
    inner = rf"{solid}(?:[^\u0000]{{0,{high - 2}}}{solid})?"
    return rf"^[{_SPACE}]*{inner if low else f'(?:{inner})?'}[{_SPACE}]*$"


Title = Annotated[
    str, AfterValidator(_title), Field(json_schema_extra={"pattern": _trimmed_text(1, TITLE_MAX)})
]
Description = Annotated[
    str,
    AfterValidator(_description),
    Field(json_schema_extra={"pattern": _trimmed_text(0, DESCRIPTION_MAX)}),
]
Tags = Annotated[
    list[str],
    AfterValidator(_tags),
    Field(
        json_schema_extra={
            "items": {"type": "string", "pattern": _trimmed_text(1, TAG_MAX)},
            "maxItems": TAGS_MAX,
        }
    ),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    Field(
        json_schema_extra={
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339_PATTERN,
            # A pattern cannot weigh the offset against the clock; the service does (422).
            "description": "RFC 3339 with an offset, at most six fractional digits; the "
            "instant must fall within years 1 to 9999 in UTC "
            "(`0001-01-01T05:00:00+06:00` is 422)",
        }
    ),
]
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    # Read-only fields of a task: accepted and ignored, so a client may send back what it got.
    id: Any = Field(None, exclude=True, description="read-only, ignored")
    user_id: Any = Field(None, exclude=True, description="read-only, ignored")
    status: Any = Field(None, exclude=True, description="read-only, ignored")
    created_at: Any = Field(None, exclude=True, description="read-only, ignored")
    updated_at: Any = Field(None, exclude=True, description="read-only, ignored")
    completed_at: Any = Field(None, exclude=True, description="read-only, ignored")
    version: Any = Field(None, exclude=True, description="read-only, ignored")


class TaskCreate(_Body):
    """A new task. `title` is required; the other fields take their defaults."""

    title: Title
    description: Description | None = None
    due_at: Timestamp | None = None
    priority: Priority = 0
    tags: Tags = Field(default_factory=list)
    completed: bool = False


class TaskReplace(_Body):
    """PUT: every editable field; an absent optional field goes back to its default.

    `completed`, when absent, leaves completion as it is.
    """

    title: Title
    description: Description | None = None
    due_at: Timestamp | None = None
    priority: Priority = 0
    tags: Tags = Field(default_factory=list)
    completed: bool | None = None


class TaskPatch(_Body):
    """JSON merge patch (RFC 7396): absent leaves a field alone, null clears it.

    null clears `description` and `due_at`, resets `tags` to [] and `priority` to 0; a null
    `title` is refused.
    """

    # A null title or completed is refused (merge_patch_changes); the document leaves null out.
    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None
    due_at: Timestamp | None = None
    priority: Priority | None = None
    tags: Tags | None = None
    completed: bool | SkipJsonSchema[None] = None


class CompletionSet(BaseModel):
    """Sets completion; a retry is harmless. No body, or `{}`, toggles instead.

    `{}` is what frontends written for "toggle completion" send, so it means no body; an explicit
    `null` is refused, as a body that says nothing clear.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    completed: bool | SkipJsonSchema[None] = None

    @field_validator("completed", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for a value sent: the default (absent: toggle) is not validated.
        if value is None:
            raise ValueError("completed must be true or false; leave it out to toggle")
        return value


# The Python type of each kind of field as the API serves it (instants as their text).
_SERVED_TYPES: dict[Kind, Any] = {
    Kind.ID: str,
    Kind.TEXT: str,
    Kind.FLAG: bool,
    Kind.INTEGER: int,
    Kind.INSTANT: str,
    Kind.STRINGS: list[str],
}


def _served_type(field: TaskField) -> Any:
    served = _SERVED_TYPES[field.kind]
    return served | None if field.nullable else served


# A task as the API serves it: its served fields, every one present (null where it may be).
_TASK_OUT_FIELDS: dict[str, Any] = {
    field.name: (_served_type(field), Field(description=field.description))
    for field in SERVED_FIELDS
}
TaskOut: type[BaseModel] = create_model("TaskOut", **_TASK_OUT_FIELDS)


# An event as the API serves it (domain/event_record.py declares its fields).
_EVENT_OUT_FIELDS: dict[str, Any] = {name: (served, ...) for name, served in EVENT_FIELDS}
EventOut: type[BaseModel] = create_model("EventOut", **_EVENT_OUT_FIELDS)


class VerifyOut(BaseModel):
    user_id: str
    events: int = Field(description="events that verified, in seq order")
    ok: bool
    head: str = Field(description="hash of the last event that verified (64 zeros for none)")
    first_bad_seq: int | None = Field(
        description="the lowest seq that is missing, out of order, or does not recompute"
    )
    reason: str | None


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[dict[str, Any]] | None = Field(None, description="on 422 only")
