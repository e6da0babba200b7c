"""What a generated task's events say: its creation, and each next change, by the log's mix.

The rebuild benchmark generates its whole log with these; the HTTP benchmark the long history of
its single-task update row. A change follows decide's rules (no edit of a deleted task, a restore
only of a deleted one, an update that changes something), so the log replays as the service's.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.events import EventType

# Of the events on an existing live task (restores go to deleted tasks only, whenever one is
# picked): the rest are TaskUpdated, 70% of them a title change, 30% a priority change.
DELETE_SHARE = 0.035
TOGGLE_SHARE = 0.39
TITLE_SHARE = 0.7

VERBS = ("Buy", "Call", "Write", "Review", "Fix", "Plan", "Book", "Send", "Check", "Clean")
OBJECTS = (
    "groceries for the week",
    "the quarterly report",
    "dentist appointment",
    "flight to Lisbon",
    "invoice 2291",
    "garden fence",
    "release notes",
    "team offsite agenda",
    "car insurance renewal",
    "birthday present for Zoé",
)
DESCRIPTIONS = (
    "Before Friday, and ask Sam whether the numbers changed since last time.",
    "Two options to compare; pick the cheaper one unless the café is closed.",
    "See the thread from Monday. Keep it short.",
    "Needs the signed form and a copy of the ID.",
    "Low effort, but it keeps slipping: do it first thing in the morning.",
)
TAGS = ("home", "work", "errands", "Urgent", "finance", "family", "health", "Travel")


@dataclass(slots=True)
class Draft:
    """What the generator remembers of a task, to follow decide's rules (no edit of a deleted
    task, a restore only of a deleted one, an update that changes something)."""

    task_id: str
    version: int
    title: str
    priority: int
    completed: bool
    deleted: bool = False


def create(
    drafts: list[Draft], at: datetime, rng: random.Random
) -> tuple[Draft, str, dict[str, Any]]:
    title = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} #{len(drafts) + 1}"
    priority = rng.choice((0, 0, 1, 1, 1, 2, 3))
    completed = rng.random() < 0.03  # a task entered as already done
    due = at + timedelta(days=rng.randint(1, 60), minutes=rng.randrange(1440))
    data: dict[str, Any] = {
        "title": title,
        "description": rng.choice(DESCRIPTIONS) if rng.random() < 0.4 else None,
        "due_at": format_timestamp(due) if rng.random() < 0.35 else None,
        "priority": priority,
        "tags": rng.sample(TAGS, k=rng.choice((0, 0, 1, 1, 2, 3))),
        "completed": completed,
    }
    draft = Draft(uuid7(at, rng), 0, title, priority, completed)
    return draft, EventType.TASK_CREATED.value, data


def change(draft: Draft, rng: random.Random) -> tuple[str, dict[str, Any]]:
    if draft.deleted:
        draft.deleted = False
        return EventType.TASK_RESTORED.value, {}
    roll = rng.random()
    if roll < DELETE_SHARE:
        draft.deleted = True
        return EventType.TASK_DELETED.value, {}
    if roll < DELETE_SHARE + TOGGLE_SHARE:
        draft.completed = not draft.completed
        kind = EventType.TASK_COMPLETED if draft.completed else EventType.TASK_REOPENED
        return kind.value, {}
    if rng.random() < TITLE_SHARE:
        draft.title = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} (v{draft.version + 1})"
        return EventType.TASK_UPDATED.value, {"changes": {"title": draft.title}}
    draft.priority = rng.choice([p for p in range(4) if p != draft.priority])
    return EventType.TASK_UPDATED.value, {"changes": {"priority": draft.priority}}


def uuid7(at: datetime, rng: random.Random) -> str:
    """A version 7 id stamped with the creation time, as the API makes them (ids sort by
    creation), but from the seeded generator, so that the same seed makes the same log."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))
