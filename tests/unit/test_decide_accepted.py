"""`decide` accepting: given a task's events, when a command, then exactly the events to append."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import cast

import pytest

from tasktrail.domain.commands import Command, TaskChanges, TaskFields
from tasktrail.domain.decide import decide
from tasktrail.domain.encoding import canonical_json
from tasktrail.domain.event_data import NewEvent
from tests.unit.decide_cases import (
    COMPLETED,
    CREATED,
    DELETED,
    DUE_IN_PARIS,
    DUE_TEXT,
    GONE,
    REOPENED,
    RESTORED,
    at,
    complete,
    create,
    delete,
    given,
    patch,
    put,
    put_unchanged,
    restore,
    task_created,
    updated,
)

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
        # TaskChanges has no such keys, so mypy refuses this; decide must still ignore them.
        patch(
            cast(
                TaskChanges,
                {"id": "other", "version": 9, "status": "completed", "completed": True},
            )
        ),
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
