"""`decide` refusing: given a task's events, when a command the rules forbid, then which error."""

from __future__ import annotations

import pytest

from tasktrail.domain.commands import Command, TaskFields
from tasktrail.domain.decide import decide
from tasktrail.domain.errors import (
    DomainError,
    NothingToRestore,
    TaskNotFound,
    VersionConflict,
)
from tasktrail.domain.event_data import NewEvent
from tests.unit.decide_cases import (
    COMPLETED,
    CREATED,
    DELETED,
    GONE,
    RESTORED,
    TASK_ID,
    at,
    complete,
    create,
    delete,
    given,
    patch,
    put_unchanged,
    restore,
    updated,
)

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
