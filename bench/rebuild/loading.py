"""Loading the generated log: generated over worker processes, copied in time order, then
VACUUM (ANALYZE) and CHECKPOINT, so that no measurement pays for what the load left behind."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import get_context

import psycopg
from psycopg import sql

from bench.common.event_rows import EVENT_COLUMNS, copy_statement
from bench.common.progress import progress
from bench.rebuild.generate import CREATE_SHARE, TASK_COLUMNS, ChunkJob, generate_chunk, schedule
from bench.rebuild.options import Options

STREAM_COLUMNS = ("user_id", "last_seq", "head_hash", "last_occurred_at")
COPY_LINES_AT_ONCE = 20_000


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
    per_user = schedule(options)
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
            with cursor.copy(copy_statement("events", EVENT_COLUMNS)) as copy:
                for start in range(0, len(ordered), COPY_LINES_AT_ONCE):
                    copy.write("".join(ordered[start : start + COPY_LINES_AT_ONCE]))
                    if start // COPY_LINES_AT_ONCE % 10 == 9:
                        progress(f"  copied {start + COPY_LINES_AT_ONCE:,} events")
            facts.seconds["copy events"] = time.perf_counter() - started
            started = time.perf_counter()
            with cursor.copy(copy_statement("user_streams", STREAM_COLUMNS)) as copy:
                copy.write("".join(stream_lines))
            with cursor.copy(copy_statement("tasks", TASK_COLUMNS)) as copy:
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
