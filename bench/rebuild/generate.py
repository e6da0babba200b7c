"""Generating a valid log, in worker processes: each user's events, stream head and tasks' rows.

Per user a gapless seq and a correct hash chain, per task gapless versions, timestamps
increasing; the tasks read model is folded with the projector's own `fold` and `task_row`.
Everything comes out as COPY text lines.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common.event_rows import copy_line, event_line
from bench.common.task_mix import Draft, change, create
from bench.rebuild.options import Options
from tasktrail.domain.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.events import CURRENT_SCHEMA_VERSION, Event
from tasktrail.domain.evolve import fold
from tasktrail.projections.inline import task_row
from tasktrail.schema import tasks

# The log's shape. Each event gets a slot in the global time order; slot i happens in
# [BASE + i * STEP, BASE + (i + 1) * STEP), so the whole log is strictly increasing in time and
# so is every user's part of it. 30 s a slot: a million events span about a year.
BASE = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
STEP_US = 30_000_000
CREATE_SHARE = 0.287  # of all events, every user's first event (a creation) included
# Users are not alike: each gets a weight in [0.25, 1.75), so 10 000 users average 100 events
# and range from about 20 to 200.
USER_WEIGHT = (0.25, 1.75)
# Most events touch a recent task: the task picked is the n-th newest, n ~ exponential(mean 8).
RECENT_TASK_MEAN = 8.0

TASK_COLUMNS = tuple(column.name for column in tasks.c)


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """Some users and, for each, the global slots of their events (ascending)."""

    seed: int
    users: list[tuple[int, list[int]]]
    create_probability: float  # for every event but a user's first


@dataclass(slots=True)
class ChunkResult:
    """COPY text lines; `slots[i]` is where `events[i]` goes in the log's time order."""

    slots: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    types: Counter[str] = field(default_factory=Counter)


def user_id_of(index: int) -> str:
    return f"user-{index:05d}"


def generate_chunk(job: ChunkJob) -> ChunkResult:
    """Runs in a worker process: the users' events, their streams' heads and their tasks' rows."""
    result = ChunkResult()
    for index, slots in job.users:
        # One generator per user, seeded by the user: the log does not depend on the chunking.
        rng = random.Random(job.seed * 1_000_003 + index)
        user_events = _user_log(user_id_of(index), slots, rng, job.create_probability)
        result.slots.extend(slots)
        result.events.extend(event_line(event) for event in user_events)
        result.types.update(event.type for event in user_events)
        by_task: dict[str, list[Event]] = {}
        for event in user_events:
            by_task.setdefault(event.task_id, []).append(event)
        for history in by_task.values():
            # The projector's own fold and row: the read model is what the service would hold.
            state = fold(history)
            if state is not None:
                result.tasks.append(_task_line(task_row(state)))
        last = user_events[-1]
        result.streams.append(
            copy_line([last.user_id, str(last.seq), last.hash, format_timestamp(last.occurred_at)])
        )
    return result


def _user_log(
    user_id: str, slots: list[int], rng: random.Random, create_probability: float
) -> list[Event]:
    drafts: list[Draft] = []
    sealed: list[Event] = []
    prev_hash = GENESIS_HASH
    for seq, slot in enumerate(slots, start=1):
        at = BASE + timedelta(microseconds=slot * STEP_US + rng.randrange(STEP_US))
        if not drafts or rng.random() < create_probability:
            draft, kind, data = create(drafts, at, rng)
            drafts.append(draft)
        else:
            draft = drafts[max(0, len(drafts) - 1 - int(rng.expovariate(1 / RECENT_TASK_MEAN)))]
            kind, data = change(draft, rng)
        draft.version += 1
        unsealed = Event(
            user_id=user_id,
            seq=seq,
            task_id=draft.task_id,
            version=draft.version,
            type=kind,
            schema_version=CURRENT_SCHEMA_VERSION,
            data=data,
            data_hash=data_hash(data),
            occurred_at=at,
            actor=user_id,
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            prev_hash=prev_hash,
            hash="",
        )
        prev_hash = recompute_hash(unsealed)
        sealed.append(dataclasses.replace(unsealed, hash=prev_hash))
    return sealed


def _task_line(row: dict[str, Any]) -> str:
    return copy_line([row[name] for name in TASK_COLUMNS])


def schedule(options: Options) -> list[list[int]]:
    """Which user each slot of the global time order belongs to, as each user's slot list."""
    rng = random.Random(options.seed)
    weights = [rng.uniform(*USER_WEIGHT) for _ in range(options.users)]
    owners = rng.choices(range(options.users), weights=weights, k=options.events)
    slots: list[list[int]] = [[] for _ in range(options.users)]
    for slot, owner in enumerate(owners):
        slots[owner].append(slot)
    return slots
