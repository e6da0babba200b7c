"""`decide`: given a task's events, when a command, then the events to append or a domain error."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tasktrail.commands.decide import decide
from tasktrail.commands.errors import (
    DomainError,
    NothingToRestore,
    TaskNotFound,
    VersionConflict,
)
from tasktrail.commands.types import (
    Command,
    CommandContext,
    CompleteTask,
    CreateTask,
    DeleteTask,
    ExpectedVersions,
    RestoreTask,
    TaskFields,
    UpdateTask,
)
from tasktrail.events.chain import GENESIS_HASH, data_hash
from tasktrail.events.encoding import canonical_json
from tasktrail.events.types import Event, EventType, NewEvent
from tasktrail.projections.evolve import fold
from tasktrail.projections.state import TaskState

USER = "u_decide"
TASK_ID = "01936d1e-0000-7000-8000-000000000001"
CONTEXT = CommandContext(user_id=USER, actor=USER, request_id="req-decide")
START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

DUE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DUE_TEXT = "2026-12-01T09:00:00.000000Z"
# The same instant as DUE, written in another time zone.
DUE_IN_PARIS = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))

# The task most cases start from: every editable field set, pending, version 1.
CREATED = NewEvent(
    EventType.TASK_CREATED,
    {
        "title": "Buy milk",
        "description": "2 litres",
        "due_at": DUE_TEXT,
        "priority": 1,
        "tags": ["home", "errands"],
        "completed": False,
    },
)
COMPLETED = NewEvent(EventType.TASK_COMPLETED, {})
REOPENED = NewEvent(EventType.TASK_REOPENED, {})
DELETED = NewEvent(EventType.TASK_DELETED, {})
RESTORED = NewEvent(EventType.TASK_RESTORED, {})
GONE = (CREATED, DELETED)


def updated(**changes: Any) -> NewEvent:
    return NewEvent(EventType.TASK_UPDATED, {"changes": changes})


def given(*history: NewEvent) -> TaskState | None:
    """The state that a stream of these events folds to, as the handlers build it."""
    stream = [
        Event(
            user_id=USER,
            seq=number,
            task_id=TASK_ID,
            version=number,
            type=new.type.value,
            schema_version=1,
            data=new.data,
            data_hash=data_hash(new.data),
            occurred_at=START + timedelta(minutes=number),
            actor=USER,
            request_id=None,
            prev_hash=GENESIS_HASH,  # the chain plays no part in deciding
            hash=GENESIS_HASH,
        )
        for number, new in enumerate(history, start=1)
    ]
    return fold(stream)


def create(fields: TaskFields, *, completed: bool = False) -> CreateTask:
    return CreateTask(context=CONTEXT, task_id=TASK_ID, fields=fields, completed=completed)


def put(
    title: str = "Buy milk",
    *,
    description: str | None = None,
    due_at: datetime | None = None,
    priority: int = 0,
    tags: tuple[str, ...] = (),
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A PUT: every editable field, absent ones at their defaults."""
    fields = TaskFields(
        title=title, description=description, due_at=due_at, priority=priority, tags=tags
    )
    return UpdateTask(
        context=CONTEXT,
        task_id=TASK_ID,
        changes=fields.as_changes(),
        completed=completed,
        expected_versions=expected,
    )


def put_unchanged(
    title: str = "Buy milk",
    *,
    due_at: datetime = DUE,
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A PUT that sends back the fields of CREATED (title and due_at may be given)."""
    return put(
        title,
        description="2 litres",
        due_at=due_at,
        priority=1,
        tags=("home", "errands"),
        completed=completed,
        expected=expected,
    )


def at(*versions: int) -> frozenset[int]:
    """The versions an If-Match header names."""
    return frozenset(versions)


def task_created(**data: Any) -> NewEvent:
    return NewEvent(EventType.TASK_CREATED, data)


def patch(
    changes: Mapping[str, Any] | None = None,
    *,
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A merge PATCH: only the fields it names (null already turned into the field's default)."""
    return UpdateTask(
        context=CONTEXT,
        task_id=TASK_ID,
        changes=dict(changes or {}),
        completed=completed,
        expected_versions=expected,
    )


def complete(completed: bool | None = None, *, expected: ExpectedVersions = None) -> CompleteTask:
    return CompleteTask(
        context=CONTEXT, task_id=TASK_ID, completed=completed, expected_versions=expected
    )


def delete(*, expected: ExpectedVersions = None) -> DeleteTask:
    return DeleteTask(context=CONTEXT, task_id=TASK_ID, expected_versions=expected)


def restore() -> RestoreTask:
    return RestoreTask(context=CONTEXT, task_id=TASK_ID)


ACCEPTED = [
    # CreateTask
    pytest.param(
        (),
        create(TaskFields(title="Buy milk")),
        [
            task_created(
                title="Buy milk",
                description=None,
                due_at=None,
                priority=0,
                tags=[],
                completed=False,
            )
        ],
        id="create-with-defaults-records-every-field",
    ),
    pytest.param(
        (),
        create(
            TaskFields(
                title="Café ☕", description="oat", due_at=DUE_IN_PARIS, priority=3, tags=("a", "b")
            ),
            completed=True,
        ),
        [
            task_created(
                title="Café ☕",
                description="oat",
                due_at=DUE_TEXT,
                priority=3,
                tags=["a", "b"],
                completed=True,
            )
        ],
        id="create-completed-writes-due-at-in-utc-and-tags-as-a-list",
    ),
    # UpdateTask, PUT-like
    pytest.param((CREATED,), put_unchanged(), [], id="put-of-the-same-fields-appends-nothing"),
    pytest.param(
        (CREATED,),
        put_unchanged(due_at=DUE_IN_PARIS),
        [],
        id="put-of-the-same-due-at-in-another-offset-appends-nothing",
    ),
    pytest.param(
        (CREATED,),
        put_unchanged("Buy oat milk"),
        [updated(title="Buy oat milk")],
        id="put-records-only-the-changed-field",
    ),
    pytest.param(
        (CREATED,),
        put(),
        [updated(description=None, due_at=None, priority=0, tags=[])],
        id="put-without-optional-fields-resets-them-to-defaults",
    ),
    pytest.param(
        (CREATED,),
        put_unchanged(completed=True),
        [COMPLETED],
        id="put-completed-true-on-a-pending-task-completes-it",
    ),
    pytest.param(
        (CREATED,),
        put("Buy oat milk", completed=True),
        [
            updated(title="Buy oat milk", description=None, due_at=None, priority=0, tags=[]),
            COMPLETED,
        ],
        id="put-with-changes-and-completed-appends-updated-then-completed",
    ),
    pytest.param(
        (CREATED, COMPLETED),
        put_unchanged(),
        [],
        id="put-without-completed-leaves-completion-as-it-is",
    ),
    pytest.param(
        (CREATED, COMPLETED),
        put_unchanged(completed=False, expected=at(2)),
        [REOPENED],
        id="put-completed-false-on-a-completed-task-reopens-it",
    ),
    # UpdateTask, PATCH-like
    pytest.param((CREATED,), patch(), [], id="empty-patch-appends-nothing"),
    pytest.param(
        (CREATED,),
        patch({"title": "Buy oat milk"}),
        [updated(title="Buy oat milk")],
        id="patch-of-the-title-records-the-title",
    ),
    pytest.param(
        (CREATED,),
        patch({"title": "Buy milk", "priority": 3}),
        [updated(priority=3)],
        id="patch-records-only-the-fields-that-changed",
    ),
    pytest.param(
        (CREATED,),
        patch({"description": None, "due_at": None, "tags": (), "priority": 0}),
        [updated(description=None, due_at=None, tags=[], priority=0)],
        id="patch-of-nulls-clears-the-fields",
    ),
    pytest.param(
        (CREATED,),
        patch({"tags": ("errands", "home")}),
        [updated(tags=["errands", "home"])],
        id="patch-that-reorders-tags-is-a-change",
    ),
    pytest.param(
        (CREATED,),
        patch({"tags": ("home", "errands"), "due_at": DUE_IN_PARIS}),
        [],
        id="patch-of-the-same-tags-and-due-instant-appends-nothing",
    ),
    pytest.param(
        (CREATED,),
        patch({"due_at": datetime(2026, 12, 2, 9, 30, tzinfo=timezone(timedelta(hours=1)))}),
        [updated(due_at="2026-12-02T08:30:00.000000Z")],
        id="patch-of-due-at-records-it-in-utc",
    ),
    pytest.param(
        (CREATED,),
        patch({"id": "other", "version": 9, "status": "completed", "completed": True}),
        [],
        id="patch-ignores-fields-that-are-not-editable",
    ),
    pytest.param(
        (CREATED, updated(title="Buy bread")),
        patch({"title": "Buy milk"}),
        [updated(title="Buy milk")],
        id="patch-compares-against-the-latest-state-not-the-creation",
    ),
    pytest.param(
        (CREATED,),
        patch({"priority": 2}, completed=True),
        [updated(priority=2), COMPLETED],
        id="patch-with-changes-and-completed-appends-updated-then-completed",
    ),
    pytest.param(
        (CREATED, COMPLETED),
        patch({"priority": 2}, completed=False),
        [updated(priority=2), REOPENED],
        id="patch-with-changes-and-completed-false-appends-updated-then-reopened",
    ),
    pytest.param(
        (CREATED, COMPLETED),
        patch({"title": "Buy milk"}, completed=True),
        [],
        id="patch-setting-what-already-holds-appends-nothing",
    ),
    pytest.param(
        (CREATED,),
        patch({"title": "Buy oat milk"}, expected=at(1)),
        [updated(title="Buy oat milk")],
        id="patch-with-the-current-version-expected-is-accepted",
    ),
    pytest.param(
        (CREATED, updated(priority=2)),
        patch({"title": "Buy oat milk"}, expected=at(1, 2, 7)),
        [updated(title="Buy oat milk")],
        id="patch-with-the-current-version-among-several-expected-is-accepted",
    ),
    pytest.param(
        (CREATED, DELETED, RESTORED),
        patch({"title": "Buy oat milk"}),
        [updated(title="Buy oat milk")],
        id="patch-of-a-restored-task-is-accepted",
    ),
    # CompleteTask
    pytest.param((CREATED,), complete(), [COMPLETED], id="toggle-completes-a-pending-task"),
    pytest.param(
        (CREATED, COMPLETED), complete(), [REOPENED], id="toggle-reopens-a-completed-task"
    ),
    pytest.param(
        (CREATED, COMPLETED, REOPENED),
        complete(),
        [COMPLETED],
        id="toggle-completes-a-reopened-task",
    ),
    pytest.param((CREATED,), complete(True), [COMPLETED], id="set-true-completes-a-pending-task"),
    pytest.param(
        (CREATED, COMPLETED), complete(False), [REOPENED], id="set-false-reopens-a-completed-task"
    ),
    pytest.param((CREATED, COMPLETED), complete(True), [], id="set-true-on-completed-is-no-event"),
    pytest.param((CREATED,), complete(False), [], id="set-false-on-pending-is-no-event"),
    pytest.param(
        (CREATED,),
        complete(expected=at(1)),
        [COMPLETED],
        id="complete-with-the-current-version-expected-is-accepted",
    ),
    # DeleteTask
    pytest.param((CREATED,), delete(), [DELETED], id="delete-of-a-live-task"),
    pytest.param((CREATED, COMPLETED), delete(), [DELETED], id="delete-of-a-completed-task"),
    pytest.param(
        (CREATED, DELETED, RESTORED),
        delete(expected=at(3)),
        [DELETED],
        id="delete-of-a-restored-task-at-the-current-version",
    ),
    # RestoreTask
    pytest.param(GONE, restore(), [RESTORED], id="restore-of-a-deleted-task"),
    pytest.param(
        (CREATED, COMPLETED, DELETED),
        restore(),
        [RESTORED],
        id="restore-of-a-deleted-completed-task",
    ),
]


@pytest.mark.parametrize(("history", "command", "expected"), ACCEPTED)
def test_an_accepted_command_yields_exactly_the_events_the_contract_names(
    history: tuple[NewEvent, ...], command: Command, expected: list[NewEvent]
) -> None:
    """Given a task's events, a command yields exactly these events, in this order."""
    assert decide(given(*history), command) == expected


@pytest.mark.parametrize(("history", "command", "expected"), ACCEPTED)
def test_every_decided_event_holds_only_json_values(
    history: tuple[NewEvent, ...], command: Command, expected: list[NewEvent]
) -> None:
    """The data of every decided event survives a canonical JSON round trip unchanged."""
    for event in decide(given(*history), command):
        assert json.loads(canonical_json(event.data)) == event.data


REFUSED = [
    pytest.param((), patch({"title": "x"}), TaskNotFound, id="update-of-a-missing-task"),
    pytest.param(GONE, put_unchanged(), TaskNotFound, id="update-of-a-deleted-task"),
    pytest.param((), complete(), TaskNotFound, id="complete-of-a-missing-task"),
    pytest.param(GONE, complete(True), TaskNotFound, id="complete-of-a-deleted-task"),
    pytest.param((), delete(), TaskNotFound, id="delete-of-a-missing-task"),
    pytest.param(GONE, delete(), TaskNotFound, id="delete-of-a-deleted-task"),
    pytest.param(
        (CREATED, DELETED, RESTORED, DELETED),
        delete(),
        TaskNotFound,
        id="delete-of-a-task-deleted-again",
    ),
    pytest.param((), restore(), TaskNotFound, id="restore-of-a-task-that-never-existed"),
    pytest.param((CREATED,), restore(), NothingToRestore, id="restore-of-a-live-task"),
    pytest.param(
        (CREATED, DELETED, RESTORED),
        restore(),
        NothingToRestore,
        id="restore-of-a-task-already-restored",
    ),
    pytest.param(
        (CREATED,),
        patch({"title": "x"}, expected=at(2)),
        VersionConflict,
        id="patch-at-a-stale-version",
    ),
    pytest.param(
        (CREATED,),
        put_unchanged(expected=at(2)),
        VersionConflict,
        id="no-op-put-at-a-stale-version",
    ),
    pytest.param(
        (CREATED, COMPLETED),
        complete(True, expected=at(1)),
        VersionConflict,
        id="set-same-completion-at-a-stale-version",
    ),
    pytest.param(
        (CREATED, updated(priority=2)),
        complete(expected=at(1, 3)),
        VersionConflict,
        id="toggle-when-no-expected-version-is-current",
    ),
    pytest.param(
        (CREATED,),
        delete(expected=at(0)),
        VersionConflict,
        id="delete-at-a-stale-version",
    ),
    # Not found comes before the version check: a deleted or missing task is 404, never 412.
    pytest.param(
        GONE,
        patch({"title": "x"}, expected=at(1)),
        TaskNotFound,
        id="stale-update-of-a-deleted-task-is-not-found",
    ),
    pytest.param(
        GONE,
        complete(expected=at(1)),
        TaskNotFound,
        id="stale-complete-of-a-deleted-task-is-not-found",
    ),
    pytest.param(
        GONE,
        delete(expected=at(1)),
        TaskNotFound,
        id="stale-delete-of-a-deleted-task-is-not-found",
    ),
    pytest.param(
        (),
        delete(expected=at(1)),
        TaskNotFound,
        id="delete-with-if-match-of-a-missing-task-is-not-found",
    ),
]


@pytest.mark.parametrize(("history", "command", "error"), REFUSED)
def test_a_refused_command_raises_the_domain_error_the_contract_maps(
    history: tuple[NewEvent, ...], command: Command, error: type[DomainError]
) -> None:
    """Given a task's events, a command the rules refuse raises exactly this domain error."""
    with pytest.raises(DomainError) as raised:
        decide(given(*history), command)
    assert type(raised.value) is error


def test_task_not_found_names_the_task_asked_for() -> None:
    """TaskNotFound carries the id of the task the command named."""
    with pytest.raises(TaskNotFound) as raised:
        decide(None, delete())
    assert raised.value.task_id == TASK_ID
    assert TASK_ID in str(raised.value)


def test_version_conflict_names_the_current_version() -> None:
    """VersionConflict carries the task's version now, so the client can refetch."""
    state = given(CREATED, updated(priority=2), COMPLETED)
    with pytest.raises(VersionConflict) as raised:
        decide(state, patch({"title": "x"}, expected=at(1, 2)))
    assert raised.value.current_version == 3


def test_nothing_to_restore_names_the_task() -> None:
    """NothingToRestore carries the id of the live task."""
    with pytest.raises(NothingToRestore) as raised:
        decide(given(CREATED), restore())
    assert raised.value.task_id == TASK_ID


def test_creating_a_task_whose_id_already_has_a_stream_is_a_server_fault() -> None:
    """A create over an existing stream is a broken id generator, not a domain error."""
    with pytest.raises(RuntimeError) as raised:
        decide(given(CREATED), create(TaskFields(title="again")))
    assert not isinstance(raised.value, DomainError)


def test_decided_events_fold_into_the_state_the_command_asked_for() -> None:
    """The events decide returns, folded onto the history, give the task the command described."""
    history = [CREATED]
    for command in (
        patch({"title": "Buy oat milk", "tags": ("home",)}, completed=True),
        delete(),
        restore(),
        complete(),
    ):
        history += decide(given(*history), command)
    state = given(*history)
    assert state is not None
    assert (state.title, state.tags, state.completed, state.deleted, state.version) == (
        "Buy oat milk",
        ("home",),
        False,
        False,
        6,
    )
