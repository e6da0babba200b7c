"""`evolve`: what each event does to a task, and the fold of a whole history."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasktrail.domain.chain import GENESIS_HASH, data_hash
from tasktrail.domain.events import Event, EventType
from tasktrail.domain.evolve import evolve, fold
from tasktrail.domain.state import TaskState

USER = "u_evolve"
TASK_ID = "01936d1e-0000-7000-8000-000000000002"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
DUE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

CREATED_DATA: dict[str, Any] = {
    "title": "Buy milk",
    "description": "2 litres",
    "due_at": "2026-12-01T09:00:00.000000Z",
    "priority": 1,
    "tags": ["home", "errands"],
    "completed": False,
}

# What CREATED_DATA folds to at version 1, T0.
BASE = TaskState(
    id=TASK_ID,
    user_id=USER,
    title="Buy milk",
    description="2 litres",
    completed=False,
    due_at=DUE,
    priority=1,
    tags=("home", "errands"),
    created_at=T0,
    updated_at=T0,
    completed_at=None,
    deleted_at=None,
    version=1,
    last_seq=1,
)


def event(type: str, data: Mapping[str, Any] | None = None, *, version: int, at: datetime) -> Event:
    payload = dict(data or {})
    return Event(
        user_id=USER,
        seq=version,
        task_id=TASK_ID,
        version=version,
        type=type,
        schema_version=1,
        data=payload,
        data_hash=data_hash(payload),
        occurred_at=at,
        actor=USER,
        request_id=None,
        prev_hash=GENESIS_HASH,
        hash=GENESIS_HASH,
    )


def created(data: Mapping[str, Any] = CREATED_DATA, *, at: datetime = T0) -> Event:
    return event(EventType.TASK_CREATED, data, version=1, at=at)


def test_task_created_builds_the_whole_task() -> None:
    """TaskCreated gives every field, created_at = updated_at = occurred_at, and version 1."""
    assert evolve(None, created()) == BASE


def test_task_created_completed_sets_completed_at_to_its_time() -> None:
    """A task created completed is completed since the creation's occurred_at."""
    state = evolve(None, created({**CREATED_DATA, "completed": True}))
    assert state == dataclasses.replace(BASE, completed=True, completed_at=T0)
    assert state is not None
    assert state.status == "completed"


def test_task_created_reads_due_at_with_an_offset_as_the_same_instant() -> None:
    """A due_at written with an offset folds to the same aware instant."""
    state = evolve(None, created({**CREATED_DATA, "due_at": "2026-12-01T10:00:00+01:00"}))
    assert state is not None
    assert state.due_at == DUE
    assert state.due_at is not None
    assert state.due_at.utcoffset() == timedelta(0)


def test_task_created_with_only_a_title_takes_the_defaults() -> None:
    """Fields a creation leaves out fold to their defaults."""
    state = evolve(None, created({"title": "Buy milk"}))
    assert state == dataclasses.replace(
        BASE, description=None, due_at=None, priority=0, tags=(), completed=False
    )


EFFECTS = [
    pytest.param(
        EventType.TASK_UPDATED,
        {"changes": {"title": "Buy oat milk"}},
        {"title": "Buy oat milk"},
        id="updated-title",
    ),
    pytest.param(
        EventType.TASK_UPDATED,
        {"changes": {"description": None, "due_at": None, "tags": [], "priority": 0}},
        {"description": None, "due_at": None, "tags": (), "priority": 0},
        id="updated-clears-fields",
    ),
    pytest.param(
        EventType.TASK_UPDATED,
        {"changes": {"due_at": "2026-12-02T08:30:00.000000Z", "tags": ["work"]}},
        {"due_at": datetime(2026, 12, 2, 8, 30, tzinfo=UTC), "tags": ("work",)},
        id="updated-due-at-and-tags-in-the-states-types",
    ),
    pytest.param(
        EventType.TASK_COMPLETED,
        {},
        {"completed": True, "completed_at": T1},
        id="completed",
    ),
    pytest.param(EventType.TASK_DELETED, {}, {"deleted_at": T1}, id="deleted"),
]


@pytest.mark.parametrize(("type", "data", "effect"), EFFECTS)
def test_each_event_changes_exactly_its_fields_plus_version_and_updated_at(
    type: str, data: dict[str, Any], effect: dict[str, Any]
) -> None:
    """On a live pending task, an event changes its own fields, version and updated_at only."""
    after = evolve(BASE, event(type, data, version=2, at=T1))
    assert after == dataclasses.replace(BASE, version=2, last_seq=2, updated_at=T1, **effect)


def test_task_reopened_clears_completion() -> None:
    """TaskReopened makes a completed task pending again, without completed_at."""
    done = dataclasses.replace(BASE, completed=True, completed_at=T0)
    after = evolve(done, event(EventType.TASK_REOPENED, version=2, at=T1))
    assert after == dataclasses.replace(BASE, version=2, last_seq=2, updated_at=T1)
    assert after is not None
    assert after.status == "pending"


def test_task_restored_brings_a_deleted_task_back_with_its_completion() -> None:
    """TaskRestored clears deleted_at and keeps every other field, completion included."""
    gone = dataclasses.replace(
        BASE, completed=True, completed_at=T0, deleted_at=T0, version=3, last_seq=3
    )
    after = evolve(gone, event(EventType.TASK_RESTORED, version=4, at=T1))
    assert after == dataclasses.replace(gone, deleted_at=None, version=4, last_seq=4, updated_at=T1)
    assert after is not None
    assert not after.deleted


def test_fold_of_a_whole_history_gives_the_final_task() -> None:
    """Folding a task's full history yields the task as its last event left it."""
    times = [T0 + timedelta(minutes=n) for n in range(8)]
    history = [
        created(at=times[0]),
        event(
            EventType.TASK_UPDATED, {"changes": {"title": "Buy oat milk"}}, version=2, at=times[1]
        ),
        event(EventType.TASK_COMPLETED, version=3, at=times[2]),
        event(EventType.TASK_DELETED, version=4, at=times[3]),
        event(EventType.TASK_RESTORED, version=5, at=times[4]),
        event(EventType.TASK_REOPENED, version=6, at=times[5]),
        event(EventType.TASK_UPDATED, {"changes": {"tags": ["x"]}}, version=7, at=times[6]),
        event(EventType.TASK_COMPLETED, version=8, at=times[7]),
    ]
    assert fold(history) == dataclasses.replace(
        BASE,
        title="Buy oat milk",
        tags=("x",),
        completed=True,
        completed_at=times[7],
        created_at=times[0],
        updated_at=times[7],
        version=8,
        last_seq=8,
    )


def test_fold_of_no_events_is_no_task() -> None:
    """An empty stream folds to None."""
    assert fold([]) is None


def test_fold_equals_evolving_one_event_at_a_time() -> None:
    """fold is evolve applied left to right from None."""
    history = [
        created(),
        event(EventType.TASK_COMPLETED, version=2, at=T1),
        event(EventType.TASK_DELETED, version=3, at=T1 + timedelta(seconds=1)),
    ]
    state: TaskState | None = None
    for each in history:
        state = evolve(state, each)
    assert fold(history) == state
    assert state is not None
    assert state.deleted


def test_an_unknown_event_type_only_bumps_version_and_updated_at() -> None:
    """A type this reader does not know leaves the task as it was except version/updated_at."""
    unknown = event("TaskArchived", {"title": "ignored", "completed": True}, version=2, at=T1)
    assert evolve(BASE, unknown) == dataclasses.replace(BASE, version=2, last_seq=2, updated_at=T1)


def test_a_history_with_an_unknown_event_in_the_middle_still_folds() -> None:
    """An unknown event does not stop the replay of the events after it."""
    history = [
        created(),
        event("TaskStarred", {"stars": 5}, version=2, at=T1),
        event(EventType.TASK_COMPLETED, version=3, at=T1),
    ]
    assert fold(history) == dataclasses.replace(
        BASE, completed=True, completed_at=T1, updated_at=T1, version=3, last_seq=3
    )


@pytest.mark.parametrize(
    "first",
    [
        EventType.TASK_UPDATED,
        EventType.TASK_COMPLETED,
        EventType.TASK_REOPENED,
        EventType.TASK_DELETED,
        EventType.TASK_RESTORED,
        "TaskArchived",
    ],
    ids=["updated", "completed", "reopened", "deleted", "restored", "unknown"],
)
def test_a_stream_not_starting_with_task_created_folds_to_none(first: str) -> None:
    """Events before any TaskCreated describe no task, and later events do not revive it."""
    data = {"changes": {"title": "x"}} if first == EventType.TASK_UPDATED else {}
    history = [
        event(first, data, version=1, at=T0),
        event(EventType.TASK_COMPLETED, version=2, at=T1),
    ]
    assert fold(history) is None


NOT_VALIDATED = [
    pytest.param(
        BASE,
        event(
            EventType.TASK_UPDATED,
            {"changes": {"title": "", "priority": 99, "description": "x" * 5000}},
            version=2,
            at=T1,
        ),
        {"title": "", "priority": 99, "description": "x" * 5000},
        id="update-to-values-the-api-would-refuse",
    ),
    pytest.param(
        BASE,
        event(
            EventType.TASK_UPDATED,
            {"changes": {"colour": "red", "completed": True, "version": 40}},
            version=2,
            at=T1,
        ),
        {},
        id="update-naming-fields-that-are-not-editable",
    ),
    pytest.param(
        BASE,
        event(EventType.TASK_UPDATED, {}, version=2, at=T1),
        {},
        id="update-without-changes",
    ),
    pytest.param(
        dataclasses.replace(BASE, completed=True, completed_at=T0),
        event(EventType.TASK_COMPLETED, version=2, at=T1),
        {"completed": True, "completed_at": T1},
        id="completion-of-a-completed-task",
    ),
    pytest.param(
        BASE,
        event(EventType.TASK_REOPENED, version=2, at=T1),
        {},
        id="reopening-of-a-pending-task",
    ),
    pytest.param(
        dataclasses.replace(BASE, deleted_at=T0),
        event(EventType.TASK_DELETED, version=2, at=T1),
        {"deleted_at": T1},
        id="deletion-of-a-deleted-task",
    ),
    pytest.param(
        BASE,
        event(EventType.TASK_RESTORED, version=2, at=T1),
        {},
        id="restore-of-a-live-task",
    ),
    pytest.param(
        dataclasses.replace(BASE, deleted_at=T0),
        event(EventType.TASK_UPDATED, {"changes": {"title": "ghost"}}, version=2, at=T1),
        {"title": "ghost"},
        id="update-of-a-deleted-task",
    ),
    pytest.param(
        BASE,
        event(EventType.TASK_COMPLETED, version=9, at=T1),
        {"completed": True, "completed_at": T1},
        id="a-version-gap",
    ),
    pytest.param(
        BASE,
        event(EventType.TASK_COMPLETED, version=2, at=T0 - timedelta(days=1)),
        {"completed": True, "completed_at": T0 - timedelta(days=1)},
        id="a-time-going-back",
    ),
]


@pytest.mark.parametrize(("before", "incoming", "effect"), NOT_VALIDATED)
def test_evolve_applies_any_written_event_without_validating_it(
    before: TaskState, incoming: Event, effect: dict[str, Any]
) -> None:
    """evolve replays events that break the rules instead of refusing them."""
    after = evolve(before, incoming)
    assert after == dataclasses.replace(
        before,
        version=incoming.version,
        last_seq=incoming.seq,
        updated_at=incoming.occurred_at,
        **effect,
    )


def _random_history(rng: random.Random) -> list[Event]:
    """Any mix of events, rule-breaking ones included: what a log could hold."""
    kinds = [*EventType, "TaskArchived"]
    changes = {"title": "t", "description": None, "due_at": None, "priority": 3, "tags": ["a"]}
    history = []
    for version in range(1, rng.randint(1, 12)):
        kind = rng.choice(kinds)
        data: dict[str, Any] = {}
        if kind == EventType.TASK_CREATED:
            data = {**CREATED_DATA, "completed": rng.random() < 0.3}
        elif kind == EventType.TASK_UPDATED:
            picked = rng.sample(sorted(changes), rng.randint(0, len(changes)))
            data = {"changes": {name: changes[name] for name in picked}}
        history.append(event(kind, data, version=version, at=T0 + timedelta(seconds=version)))
    return history


@pytest.mark.parametrize("seed", range(200))
def test_fold_equals_evolve_on_any_history(seed: int) -> None:
    """fold merges effects before building the state once: on any history, rule-breaking or
    not, that must give what evolving one event at a time gives."""
    history = _random_history(random.Random(seed))
    state: TaskState | None = None
    for each in history:
        state = evolve(state, each)
    assert fold(history) == state
