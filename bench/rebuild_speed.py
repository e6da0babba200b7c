"""Rebuild speed: `projections rebuild` on a generated log, beside a set-based SQL replay of it.

    uv run python bench/rebuild_speed.py [--events 1000000] [--users 10000]
        [--out bench/results/rebuild_speed.json] [--profile bench/results/rebuild.pstats]

One run, on a scratch PostgreSQL database (created on TASKTRAIL_TEST_POSTGRES_URL, dropped at the
end, also on Ctrl-C or an error):

1. Generates a valid log: per user a gapless seq and a correct hash chain, per task gapless
   versions, timestamps increasing, about 29% TaskCreated (so ~287k tasks for 1M events, as in
   shared/design/performance.md); the tasks read model is folded from it with the projector's own
   `fold` and `task_row`. Everything is loaded with COPY, in time order (a real log is appended
   in time order, users interleaved), then VACUUM ANALYZE and CHECKPOINT, so that no measurement
   pays for hint bits or a checkpoint the load left behind.
2. Measures, each with time.perf_counter, in this order: `rebuild()` (events/s, and its phases);
   a set-based SQL replay of the same log into a scratch table (one INSERT ... SELECT with ordered
   aggregates), compared column by column with the rebuilt table; `diff_read_model()` (what
   `projections verify` does); `verify_user()` for every user (what `audit verify` does).
3. Prints a table, writes it as JSON to --out, and with --profile runs the rebuild once more
   under cProfile and prints where its Python time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import json
import os
import platform
import pstats
import random
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psycopg
from procstat import (
    children_cpu_seconds,
    host_busy_seconds,
    parent_pid,
    reaped_children_cpu_seconds,
)
from psycopg import sql
from sqlalchemy import Engine
from stack import git_commit, libpq_url, postgres_version, scratch_database

import tasktrail
from tasktrail.database import create_database_engine
from tasktrail.events.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.events.encoding import canonical_json, format_timestamp
from tasktrail.events.types import CURRENT_SCHEMA_VERSION, Event, EventType
from tasktrail.migrations.runner import upgrade
from tasktrail.projections.evolve import fold
from tasktrail.projections.inline import task_row
from tasktrail.projections.rebuild import RebuildReport, rebuild
from tasktrail.projections.verify import VerifyCount, diff_read_model
from tasktrail.queries.audit import users_with_events, verify_user
from tasktrail.schema import tasks
from tasktrail.settings import Settings

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_EVENTS_PER_SECOND = 100_000
NOISE_PCT = 20.0  # % of a core used by others during a measurement before the run says so

# The log's shape. Each event gets a slot in the global time order; slot i happens in
# [BASE + i * STEP, BASE + (i + 1) * STEP), so the whole log is strictly increasing in time and
# so is every user's part of it. 30 s a slot: a million events span about a year.
BASE = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
STEP_US = 30_000_000
CREATE_SHARE = 0.287  # of all events, every user's first event (a creation) included
# Of the events on an existing live task (restores go to deleted tasks only, whenever one is
# picked): the rest are TaskUpdated, 70% of them a title change, 30% a priority change.
DELETE_SHARE = 0.035
TOGGLE_SHARE = 0.39
TITLE_SHARE = 0.7
# Users are not alike: each gets a weight in [0.25, 1.75), so 10 000 users average 100 events
# and range from about 20 to 200.
USER_WEIGHT = (0.25, 1.75)
# Most events touch a recent task: the task picked is the n-th newest, n ~ exponential(mean 8).
RECENT_TASK_MEAN = 8.0

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

# The columns the load writes; position and xact_id are filled by their defaults.
EVENT_COLUMNS = (
    "user_id",
    "seq",
    "task_id",
    "version",
    "type",
    "schema_version",
    "data",
    "data_hash",
    "occurred_at",
    "actor",
    "request_id",
    "prev_hash",
    "hash",
)
TASK_COLUMNS = tuple(column.name for column in tasks.c)
STREAM_COLUMNS = ("user_id", "last_seq", "head_hash", "last_occurred_at")
COPY_LINES_AT_ONCE = 20_000


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    users: int
    batch_size: int
    workers: int
    seed: int
    processes: int
    postgres_url: str
    out: Path
    profile: Path | None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--users", type=int, default=10_000, help="users they are spread over")
    parser.add_argument(
        "--batch-size", type=int, default=5_000, help="rebuild(batch_size=...), the CLI default"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="rebuild(workers=...): processes folding the log, the CLI default",
    )
    parser.add_argument("--seed", type=int, default=1, help="the same seed makes the same log")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes generating the log (hashing is CPU-bound Python)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server where the benchmark may create and drop a database",
    )
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench/results/rebuild_speed.json")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="after the measurements, rebuild once more under cProfile and save the stats here",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.users < 1 or args.events < args.users:
        parser.error("--events and --users must be positive, with at least one event a user")
    return Options(
        events=args.events,
        users=args.users,
        batch_size=args.batch_size,
        workers=max(1, args.workers),
        seed=args.seed,
        processes=max(1, args.processes),
        postgres_url=args.postgres_url,
        out=args.out,
        profile=args.profile,
    )


# --- generating the log -------------------------------------------------------------------------


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


@dataclass(slots=True)
class _Draft:
    """What the generator remembers of a task, to follow decide's rules (no edit of a deleted
    task, a restore only of a deleted one, an update that changes something)."""

    task_id: str
    version: int
    title: str
    priority: int
    completed: bool
    deleted: bool = False


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
        result.events.extend(_event_line(event) for event in user_events)
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
            _line([last.user_id, str(last.seq), last.hash, format_timestamp(last.occurred_at)])
        )
    return result


def _user_log(
    user_id: str, slots: list[int], rng: random.Random, create_probability: float
) -> list[Event]:
    drafts: list[_Draft] = []
    sealed: list[Event] = []
    prev_hash = GENESIS_HASH
    for seq, slot in enumerate(slots, start=1):
        at = BASE + timedelta(microseconds=slot * STEP_US + rng.randrange(STEP_US))
        if not drafts or rng.random() < create_probability:
            draft, kind, data = _create(drafts, at, rng)
            drafts.append(draft)
        else:
            draft = drafts[max(0, len(drafts) - 1 - int(rng.expovariate(1 / RECENT_TASK_MEAN)))]
            kind, data = _change(draft, rng)
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


def _create(
    drafts: list[_Draft], at: datetime, rng: random.Random
) -> tuple[_Draft, str, dict[str, Any]]:
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
    draft = _Draft(_uuid7(at, rng), 0, title, priority, completed)
    return draft, EventType.TASK_CREATED.value, data


def _change(draft: _Draft, rng: random.Random) -> tuple[str, dict[str, Any]]:
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


def _uuid7(at: datetime, rng: random.Random) -> str:
    """A version 7 id stamped with the creation time, as the API makes them (ids sort by
    creation), but from the seeded generator, so that the same seed makes the same log."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


# COPY's text format: tab-separated, \N for NULL, and a backslash starts an escape, so the JSON
# escapes inside `data` must have theirs doubled.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, list | dict):
        value = canonical_json(value).decode()
    return str(value).translate(_COPY_ESCAPES)


def _line(values: Sequence[object]) -> str:
    return "\t".join(_text(value) for value in values) + "\n"


def _event_line(event: Event) -> str:
    # A million of these: only `data` can hold a character COPY must see escaped; the other
    # fields are ids, numbers, hex digests and timestamps the generator made.
    data = canonical_json(event.data).decode().translate(_COPY_ESCAPES)  # the text hashed
    return (
        f"{event.user_id}\t{event.seq}\t{event.task_id}\t{event.version}\t{event.type}\t"
        f"{event.schema_version}\t{data}\t{event.data_hash}\t"
        f"{format_timestamp(event.occurred_at)}\t{event.actor}\t{event.request_id}\t"
        f"{event.prev_hash}\t{event.hash}\n"
    )


def _task_line(row: dict[str, Any]) -> str:
    return _line([row[name] for name in TASK_COLUMNS])


def _schedule(options: Options) -> list[list[int]]:
    """Which user each slot of the global time order belongs to, as each user's slot list."""
    rng = random.Random(options.seed)
    weights = [rng.uniform(*USER_WEIGHT) for _ in range(options.users)]
    owners = rng.choices(range(options.users), weights=weights, k=options.events)
    slots: list[list[int]] = [[] for _ in range(options.users)]
    for slot, owner in enumerate(owners):
        slots[owner].append(slot)
    return slots


# --- loading --------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadFacts:
    users: int = 0
    tasks: int = 0
    types: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    database_bytes: dict[str, int] = field(default_factory=dict)


def load_log(options: Options, url: str) -> LoadFacts:
    facts = LoadFacts()
    started = time.perf_counter()
    per_user = _schedule(options)
    users = [(index, slots) for index, slots in enumerate(per_user) if slots]
    chunk = max(1, len(users) // (options.processes * 20))  # ~20 chunks a process: progress
    # Every user's first event is a creation; the others are one with the probability that
    # brings the whole log to CREATE_SHARE.
    others = options.events - len(users)
    probability = max(0.0, (CREATE_SHARE * options.events - len(users)) / others) if others else 0.0
    jobs = [
        ChunkJob(options.seed, users[i : i + chunk], probability)
        for i in range(0, len(users), chunk)
    ]
    ordered: list[str] = [""] * options.events
    task_lines: list[str] = []
    stream_lines: list[str] = []
    types: Counter[str] = Counter()
    done = 0
    # spawn, not fork: a child starts clean, without a copy of the parent's pooled connections.
    with get_context("spawn").Pool(options.processes) as pool:
        for result in pool.imap_unordered(generate_chunk, jobs):
            for slot, line in zip(result.slots, result.events, strict=True):
                ordered[slot] = line
            task_lines.extend(result.tasks)
            stream_lines.extend(result.streams)
            types.update(result.types)
            done += len(result.events)
            if done * 10 // options.events != (done - len(result.events)) * 10 // options.events:
                progress(f"  generated {done:,} of {options.events:,} events")
    facts.seconds["generate"] = time.perf_counter() - started
    facts.users, facts.tasks, facts.types = len(stream_lines), len(task_lines), dict(types)

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(_copy_statement("events", EVENT_COLUMNS)) as copy:
                for start in range(0, len(ordered), COPY_LINES_AT_ONCE):
                    copy.write("".join(ordered[start : start + COPY_LINES_AT_ONCE]))
                    if start // COPY_LINES_AT_ONCE % 10 == 9:
                        progress(f"  copied {start + COPY_LINES_AT_ONCE:,} events")
            facts.seconds["copy events"] = time.perf_counter() - started
            started = time.perf_counter()
            with cursor.copy(_copy_statement("user_streams", STREAM_COLUMNS)) as copy:
                copy.write("".join(stream_lines))
            with cursor.copy(_copy_statement("tasks", TASK_COLUMNS)) as copy:
                copy.write("".join(task_lines))
            facts.seconds["copy user_streams and tasks"] = time.perf_counter() - started
        del ordered
        # A log in production is mostly old: its pages are all-visible with hint bits set.
        # Without this the first measurement would set them for the others.
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        facts.seconds["vacuum analyze, checkpoint"] = time.perf_counter() - started
        for table in ("events", "tasks"):
            size = conn.execute(
                sql.SQL("SELECT pg_total_relation_size({})").format(sql.Literal(table))
            ).fetchone()
            facts.database_bytes[table] = int(size[0]) if size else 0
    return facts


def _copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


# --- CPU accounting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Counters:
    at: float
    python: float
    backends: dict[int, float]
    reaped: float  # the postmaster's reaped children
    host: float


@dataclass(frozen=True, slots=True)
class Cpu:
    """Shares of one core (100 = one core busy) over a measurement; 2 cores give at most 200."""

    python_pct: float  # this process and its workers: the rebuild's, verify's, audit's Python
    postgres_pct: float  # the PostgreSQL cluster (see CpuMeter)
    host_pct: float  # the whole machine

    @property
    def other_pct(self) -> float:
        """Anything else that ran: PostgreSQL's own background processes, and other programs
        (a test suite running beside the benchmark shows here)."""
        return self.host_pct - self.python_pct - self.postgres_pct


class CpuMeter:
    """Reads CPU counters around a measurement. Python is this process and the children it
    waited for (the rebuild's workers). PostgreSQL is the whole cluster: every child of the
    postmaster, plus what the postmaster reaped meanwhile (backends and parallel helpers that
    came and went: the workers' connections, parallel index builds), less what those had used
    before the measurement. On a quiet machine that is this benchmark's database alone."""

    def __init__(self, admin: psycopg.Connection[Any], database: str) -> None:
        del database  # the cluster is measured whole
        row = admin.execute("SELECT pg_backend_pid()").fetchone()
        self._postmaster = (parent_pid(int(row[0])) if row else None) or 0

    def _read(self) -> _Counters:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return _Counters(
            time.perf_counter(),
            time.process_time() + children.ru_utime + children.ru_stime,
            children_cpu_seconds(self._postmaster),
            reaped_children_cpu_seconds(self._postmaster),
            host_busy_seconds(),
        )

    @contextlib.contextmanager
    def measuring(self, into: list[Cpu]) -> Iterator[None]:
        before = self._read()
        yield
        after = self._read()
        seconds = after.at - before.at
        backends = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())
        # A process that ended was reaped with all its CPU: take off what it had used before.
        gone = sum(cpu for pid, cpu in before.backends.items() if pid not in after.backends)
        backends += after.reaped - before.reaped - gone
        into.append(
            Cpu(
                python_pct=100 * (after.python - before.python) / seconds,
                postgres_pct=100 * backends / seconds,
                host_pct=100 * (after.host - before.host) / seconds,
            )
        )


# --- the measurements -------------------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    name: str
    events: int | None
    seconds: float
    cpu: Cpu | None = None
    note: str = ""

    @property
    def events_per_second(self) -> float | None:
        return self.events / self.seconds if self.events and self.seconds else None


def measure_rebuild(
    engine: Engine, meter: CpuMeter, options: Options
) -> tuple[list[Measurement], RebuildReport]:
    marks: list[tuple[float, int]] = []
    step = max(options.events // 10, 1)

    def on_events(count: int) -> None:
        marks.append((time.perf_counter(), count))
        if len(marks) > 1 and count // step != marks[-2][1] // step:
            progress(f"  rebuild: {count:,} events replayed")

    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        report = rebuild(
            engine, batch_size=options.batch_size, workers=options.workers, on_events=on_events
        )
        wall = time.perf_counter() - started
    rows = [
        Measurement(
            "rebuild (its report)",
            report.events,
            report.seconds,
            cpu[0],
            f"{report.tasks:,} tasks; {report.workers} workers; wall {wall:.2f} s; "
            f"fence {report.fence_ms:.1f} ms",
        )
    ]
    notes = {
        "replay": "read, fold, COPY (workers started)",
        "check": "count and checksum, in SQL",
        "indexes": "indexes, primary key, ANALYZE",
    }
    rows.extend(
        Measurement(
            f"  {name}", report.events if name == "replay" else None, s, None, notes.get(name, "")
        )
        for name, s in report.phases.items()
    )
    return rows, report


# One row per task from one pass over the log: the last value each field was given (by a
# TaskCreated's data or a TaskUpdated's changes), completion from the last of TaskCreated /
# TaskCompleted / TaskReopened, deletion from the last of TaskDeleted / TaskRestored. It is the
# set-based counterpart of evolve, folded columns with lower() (equal to str.casefold() on this
# log's text), and it writes into a table without indexes, like the rebuild's replay phase.
SQL_REPLAY = """
INSERT INTO tasks_sql (id, user_id, title, title_folded, description, description_folded,
    completed, due_at, priority, tags, tags_folded, created_at, updated_at, completed_at,
    deleted_at, version, last_seq, body, etag)
SELECT id, user_id, title, lower(title), description, lower(description), completed, due_at,
       priority, tags,
       coalesce((SELECT jsonb_agg(lower(tag) ORDER BY n)
                 FROM jsonb_array_elements_text(tags) WITH ORDINALITY AS t(tag, n)), '[]'),
       created_at, updated_at, completed_at, deleted_at, version, last_seq,
       -- The served document, as projections/document.py writes it (compact JSON, the
       -- contract's key order, timestamps with six digits and Z); checked column by column.
       '{"id":"' || id || '","user_id":' || to_json(user_id) || ',"title":' || to_json(title)
       || ',"description":' || coalesce(to_json(description)::text, 'null')
       || ',"completed":' || CASE WHEN completed THEN 'true' ELSE 'false' END
       || ',"status":' || CASE WHEN completed THEN '"completed"' ELSE '"pending"' END
       || ',"due_at":' || coalesce('"' || to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
       || ',"priority":' || priority
       || ',"tags":' || coalesce((SELECT '[' || string_agg(to_json(tag)::text, ',' ORDER BY n) || ']'
                 FROM jsonb_array_elements_text(tags) WITH ORDINALITY AS t(tag, n)), '[]')
       || ',"created_at":"' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","updated_at":"' || to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","completed_at":'
       || coalesce('"' || to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
       || ',"version":' || version || '}',
       '"' || version || '"'
FROM (
    SELECT task_id AS id,
           min(user_id) AS user_id,
           (array_agg(f ->> 'title' ORDER BY version DESC)
                FILTER (WHERE f ? 'title'))[1] AS title,
           (array_agg(f ->> 'description' ORDER BY version DESC)
                FILTER (WHERE f ? 'description'))[1] AS description,
           (array_agg((f ->> 'due_at')::timestamptz ORDER BY version DESC)
                FILTER (WHERE f ? 'due_at'))[1] AS due_at,
           (array_agg((f ->> 'priority')::smallint ORDER BY version DESC)
                FILTER (WHERE f ? 'priority'))[1] AS priority,
           (array_agg(f -> 'tags' ORDER BY version DESC) FILTER (WHERE f ? 'tags'))[1] AS tags,
           (array_agg(done ORDER BY version DESC) FILTER (WHERE done IS NOT NULL))[1]
                AS completed,
           (array_agg(CASE WHEN done THEN occurred_at END ORDER BY version DESC)
                FILTER (WHERE done IS NOT NULL))[1] AS completed_at,
           (array_agg(CASE WHEN type = 'TaskDeleted' THEN occurred_at END ORDER BY version DESC)
                FILTER (WHERE type IN ('TaskDeleted', 'TaskRestored')))[1] AS deleted_at,
           min(occurred_at) FILTER (WHERE type = 'TaskCreated') AS created_at,
           max(occurred_at) AS updated_at,
           max(version) AS version,
           max(seq) AS last_seq
    FROM (
        SELECT task_id, user_id, seq, version, type, occurred_at,
               CASE type WHEN 'TaskCreated' THEN data
                         WHEN 'TaskUpdated' THEN data -> 'changes' END AS f,
               CASE type WHEN 'TaskCreated' THEN coalesce((data ->> 'completed')::boolean, false)
                         WHEN 'TaskCompleted' THEN true
                         WHEN 'TaskReopened' THEN false END AS done
        FROM events
    ) AS e
    GROUP BY task_id
    HAVING bool_or(type = 'TaskCreated')
) AS folded
"""


def measure_sql_replay(
    url: str, meter: CpuMeter, events_total: int
) -> tuple[Measurement, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute("DROP TABLE IF EXISTS tasks_sql")
        conn.execute("CREATE TABLE tasks_sql (LIKE tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        conn.commit()
        plan = [str(row[0]) for row in conn.execute("EXPLAIN " + SQL_REPLAY).fetchall()]
        cpu: list[Cpu] = []
        with meter.measuring(cpu):
            started = time.perf_counter()
            conn.execute(SQL_REPLAY)
            conn.commit()  # the rebuild's time includes its commits too
            seconds = time.perf_counter() - started
        rows = _scalar(conn, "SELECT count(*) FROM tasks_sql")
        differing = _differing_columns(conn, "tasks", "tasks_sql")
    measurement = Measurement(
        "set-based SQL replay", events_total, seconds, cpu[0], f"{rows:,} rows"
    )
    return measurement, {"rows": rows, "differing_columns_vs_rebuild": differing, "plan": plan}


def _differing_columns(conn: psycopg.Connection[Any], left: str, right: str) -> dict[str, int]:
    """Per column, how many tasks differ between two tables (a task missing on one side counts
    in `id`)."""
    counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE a.{0} IS DISTINCT FROM b.{0})").format(sql.Identifier(c))
        for c in TASK_COLUMNS
    )
    query = sql.SQL("SELECT {} FROM {} a FULL JOIN {} b ON a.id = b.id").format(
        counts, sql.Identifier(left), sql.Identifier(right)
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    return {name: int(n) for name, n in zip(TASK_COLUMNS, row, strict=True) if n}


def _scalar(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def measure_verify(
    engine: Engine, meter: CpuMeter, events_total: int
) -> tuple[Measurement, dict[str, Any]]:
    count = VerifyCount()
    drifts: list[str] = []
    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        for drift in diff_read_model(engine, count):  # consumed whole, as the CLI does
            drifts.append(drift.describe())
        seconds = time.perf_counter() - started
    measurement = Measurement(
        "projections verify", events_total, seconds, cpu[0], f"{count.tasks:,} tasks compared"
    )
    return measurement, {"tasks": count.tasks, "drifts": len(drifts), "samples": drifts[:10]}


def measure_audit(engine: Engine, meter: CpuMeter) -> tuple[Measurement, dict[str, Any]]:
    users = events_seen = 0
    broken: list[str] = []
    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        # As `tasktrail audit verify` does: one connection, every user in order (the CLI stops
        # at the first break; here every chain is checked and the breaks collected).
        with engine.connect() as conn:
            for user_id in users_with_events(conn):
                report = verify_user(conn, user_id)
                users += 1
                events_seen += report.events
                if not report.ok:
                    broken.append(f"{user_id}: seq {report.first_bad_seq}: {report.reason}")
        seconds = time.perf_counter() - started
    measurement = Measurement(
        "audit verify", events_seen, seconds, cpu[0], f"{users:,} users, {len(broken)} broken"
    )
    return measurement, {"users": users, "events": events_seen, "broken": broken[:10]}


def profile_rebuild(engine: Engine, options: Options, path: Path) -> list[dict[str, Any]]:
    """Rebuild once more under cProfile (not a measurement: profiling slows Python calls down,
    the small ones most) and return the functions that spend the most time themselves."""
    profiler = cProfile.Profile()
    profiler.enable()
    rebuild(engine, batch_size=options.batch_size)  # one process: cProfile sees only its own
    profiler.disable()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    top = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:25]
    return [
        {
            "function": f"{Path(file).name}:{line}({name})" if line else name,
            "calls": entry[1],
            "tottime_s": round(entry[2], 3),
            "share_pct": round(100 * entry[2] / total, 1) if total else 0.0,
            "cumtime_s": round(entry[3], 3),
        }
        for (file, line, name), entry in top
    ]


# --- the report -----------------------------------------------------------------------------------


def table(rows: Sequence[Measurement]) -> str:
    header = ("measurement", "events", "seconds", "events/s", "py cpu", "pg cpu", "other cpu")
    lines = [header]
    for row in rows:
        rate = row.events_per_second
        cpu = row.cpu
        lines.append(
            (
                row.name,
                f"{row.events:,}" if row.events else "",
                f"{row.seconds:.2f}",
                f"{rate:,.0f}" if rate else "",
                f"{cpu.python_pct:.0f}%" if cpu else "",
                f"{cpu.postgres_pct:.0f}%" if cpu else "",
                f"{cpu.other_pct:.0f}%" if cpu else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        note = rows[n - 1].note if n else "note"
        out.append("  ".join(cells) + "  " + note)
    return "\n".join(out)


# --- the run --------------------------------------------------------------------------------------


def run(options: Options) -> int:
    began = time.perf_counter()
    started_at = datetime.now(UTC)
    admin_url = libpq_url(options.postgres_url)
    result: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": postgres_version(admin_url),
        "git_commit": git_commit(),
        "tasktrail_version": tasktrail.__version__,
        "options": {
            "events": options.events,
            "users": options.users,
            "batch_size": options.batch_size,
            "workers": options.workers,
            "seed": options.seed,
        },
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
    }
    with (
        scratch_database(admin_url) as database,
        psycopg.connect(admin_url, autocommit=True) as admin,
    ):
        settings = Settings(
            _env_file=None,  # no .env: the benchmark says everything
            database_url=database.url,
            auth_secret="x" * 64,
            # Reading the whole log and building indexes are long statements; the service's
            # 10 s timeout is for requests.
            statement_timeout_ms=24 * 3_600_000,
        )
        engine = create_database_engine(settings)
        try:
            upgrade(engine)
            progress(f"generating {options.events:,} events over {options.users:,} users")
            facts = load_log(options, database.url)
            progress(
                f"loaded {facts.users:,} users, {facts.tasks:,} tasks: "
                + ", ".join(f"{name} {s:.1f} s" for name, s in facts.seconds.items())
            )
            result["load"] = dataclasses.asdict(facts)
            meter = CpuMeter(admin, database.name)
            rows, checks = measure(engine, meter, options, database.url, facts)
            result["measurements"] = [
                {
                    "name": row.name.strip(),
                    "events": row.events,
                    "seconds": round(row.seconds, 3),
                    "events_per_second": row.events_per_second,
                    "cpu_pct": None
                    if row.cpu is None
                    else {**dataclasses.asdict(row.cpu), "other_pct": row.cpu.other_pct},
                    "note": row.note,
                }
                for row in rows
            ]
            result["checks"] = checks
            if options.profile is not None:
                progress("rebuilding once more under cProfile")
                result["profile"] = profile_rebuild(engine, options, options.profile)
        finally:
            engine.dispose()
    result["wall_seconds"] = round(time.perf_counter() - began, 1)

    rebuild_rate = rows[0].events_per_second or 0.0
    sql_rate = next(r.events_per_second for r in rows if r.name == "set-based SQL replay") or 0.0
    print(
        f"rebuild_speed: {options.events:,} events, {facts.users:,} users, {facts.tasks:,} tasks; "
        f"PostgreSQL {result['postgresql']}, {os.cpu_count()} cores, batch {options.batch_size}"
    )
    print("load (not measured): " + ", ".join(f"{k} {v:.1f} s" for k, v in facts.seconds.items()))
    total = sum(facts.types.values())
    mix = sorted(facts.types.items(), key=lambda item: -item[1])
    print("mix: " + ", ".join(f"{kind} {100 * n / total:.1f}%" for kind, n in mix))
    sizes = ", ".join(f"{table} {n / 2**20:,.0f} MiB" for table, n in facts.database_bytes.items())
    print(f"on disk, with indexes: {sizes}")
    print()
    print(table(rows))
    print()
    failures = _failures(checks, facts)
    verdict = (
        f"rebuild: {rebuild_rate:,.0f} events/s, {100 * rebuild_rate / TARGET_EVENTS_PER_SECOND:.0f}%"
        f" of the {TARGET_EVENTS_PER_SECOND:,} events/s target; the SQL replay is "
        f"{sql_rate / rebuild_rate if rebuild_rate else 0:.1f}x faster"
    )
    print(verdict)
    print("checks: " + ("; ".join(failures) if failures else "all passed"))
    noise = [
        f"{r.name.strip()} {r.cpu.other_pct:.0f}%"
        for r in rows
        if r.cpu and r.cpu.other_pct > NOISE_PCT
    ]
    if noise:
        result["noise"] = noise
        print(
            "Noise: other processes used a share of a core during "
            + ", ".join(noise)
            + "; on 2 cores that slows the measurement down: rerun on a quiet machine"
        )
    if "profile" in result:
        print(f"\nrebuild under cProfile, by own time ({options.profile}):")
        for entry in result["profile"][:20]:
            print(
                f"  {entry['share_pct']:5.1f}%  {entry['tottime_s']:8.2f} s  "
                f"{entry['calls']:>10,}  {entry['function']}"
            )
    print(f"\nwall time of the whole run: {result['wall_seconds']:.0f} s")
    result["verdict"] = verdict
    result["failures"] = failures
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to {options.out}")
    return 1 if failures else 0


def measure(
    engine: Engine, meter: CpuMeter, options: Options, url: str, facts: LoadFacts
) -> tuple[list[Measurement], dict[str, Any]]:
    """The four measurements, in one run, on the same log."""
    checks: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        # The generated read model, kept to compare with what the rebuild makes of the log.
        conn.execute("CREATE TABLE tasks_generated AS TABLE tasks")
        conn.commit()
    progress("measuring rebuild()")
    rows, report = measure_rebuild(engine, meter, options)
    checks["rebuild"] = dataclasses.asdict(report)
    with psycopg.connect(url) as conn:
        checks["rebuilt_vs_generated_differing_columns"] = _differing_columns(
            conn, "tasks", "tasks_generated"
        )
    progress("measuring the set-based SQL replay")
    sql_row, checks["sql_replay"] = measure_sql_replay(url, meter, report.events)
    rows.append(sql_row)
    progress("measuring projections verify (diff_read_model)")
    verify_row, checks["verify"] = measure_verify(engine, meter, report.events)
    rows.append(verify_row)
    progress("measuring audit verify (verify_user for every user)")
    audit_row, checks["audit"] = measure_audit(engine, meter)
    rows.append(audit_row)
    checks["expected"] = {"events": options.events, "users": facts.users, "tasks": facts.tasks}
    return rows, checks


def _failures(checks: dict[str, Any], facts: LoadFacts) -> list[str]:
    """Everything that would make the figures meaningless, said plainly."""
    failures = []
    expected = checks["expected"]
    if checks["rebuild"]["events"] != expected["events"]:
        failures.append(f"the rebuild read {checks['rebuild']['events']:,} events")
    if checks["rebuild"]["tasks"] != facts.tasks:
        failures.append(
            f"the rebuild made {checks['rebuild']['tasks']:,} tasks, not {facts.tasks:,}"
        )
    if checks["rebuilt_vs_generated_differing_columns"]:
        failures.append(
            "the rebuilt table differs from the generated read model: "
            f"{checks['rebuilt_vs_generated_differing_columns']}"
        )
    if checks["sql_replay"]["rows"] != facts.tasks:
        failures.append(f"the SQL replay made {checks['sql_replay']['rows']:,} rows")
    if checks["sql_replay"]["differing_columns_vs_rebuild"]:
        failures.append(
            "the SQL replay differs from the rebuild: "
            f"{checks['sql_replay']['differing_columns_vs_rebuild']}"
        )
    if checks["verify"]["drifts"]:
        failures.append(f"projections verify found {checks['verify']['drifts']} drifts")
    if checks["audit"]["broken"] or checks["audit"]["events"] != expected["events"]:
        failures.append(f"audit verify: {checks['audit']['broken']}")
    if checks["audit"]["users"] != expected["users"]:
        failures.append(f"audit verify saw {checks['audit']['users']:,} users")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return run(options)
    except KeyboardInterrupt:
        progress("interrupted; the scratch database was dropped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
