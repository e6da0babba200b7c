"""A command decided on a task's state: its events numbered after the user's head, and the task
they leave. Both adapters decide this way; each then stores the events its own way (SQLite links
and inserts them here, PostgreSQL's `tasktrail_append` links them in the database)."""

from __future__ import annotations

from datetime import datetime
from functools import reduce

from tasktrail.domain.commands import Command
from tasktrail.domain.decide import decide
from tasktrail.domain.evolve import evolve
from tasktrail.domain.state import TaskState
from tasktrail.events.store import StreamHead, numbered_events
from tasktrail.storage.port import Outcome


def decision(
    command: Command, before: TaskState | None, head: StreamHead, now: datetime
) -> Outcome:
    """The events `command` appends to `before`, numbered after `head` at `now` but not yet
    linked (a task's state does not hold the links), and the state they fold to. Domain errors
    are raised as `decide` raises them."""
    new_events = decide(before, command)
    if not new_events:
        return Outcome(before, [])
    numbered = numbered_events(
        head,
        task_id=command.task_id,
        base_version=0 if before is None else before.version,
        new_events=new_events,
        now=now,
        actor=command.context.actor,
        request_id=command.context.request_id,
    )
    after = reduce(evolve, numbered, before)
    if after is None:
        raise RuntimeError(f"events {numbered} fold to no task")  # decide never asks for that
    return Outcome(after, numbered)
