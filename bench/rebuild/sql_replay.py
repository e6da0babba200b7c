"""A set-based SQL replay of the log: what PostgreSQL alone makes of it in one statement, as a
bar for the rebuild, and a second derivation of the read model to compare it with."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from bench.rebuild.generate import TASK_COLUMNS
from bench.rebuild.metering import Cpu, CpuMeter, Measurement

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
       -- The served document, as domain/document.py writes it (compact JSON, the
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
        differing = differing_columns(conn, "tasks", "tasks_sql")
    measurement = Measurement(
        "set-based SQL replay", events_total, seconds, cpu[0], f"{rows:,} rows"
    )
    return measurement, {"rows": rows, "differing_columns_vs_rebuild": differing, "plan": plan}


def differing_columns(conn: psycopg.Connection[Any], left: str, right: str) -> dict[str, int]:
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
