"""pgbench writing a create's rows in plain statements: what PostgreSQL alone does with them here.

This is not the service's transaction. On PostgreSQL the service's create is one call, in
autocommit, of the database function `tasktrail_append` (storage/postgres/), which makes the
same writes in PL/pgSQL, in one round trip, and also checks the task's last version and hashes
the chain. The script sends those writes as separate statements, the ones the SQLite adapter's
transaction body (`handle`, storage/sqlite/transaction.py) runs for a create, compiled by
SQLAlchemy for psycopg (casts included): the stream lock's upsert
(`events.store.lock_statement`), the event insert of `events.store.append` (its row from
`event_row`), the projector's upsert of the whole `tasks` row
(`projections.inline.upsert_statement`) and the stream head's update
(`events.store.move_head_statement`), between BEGIN and COMMIT. It stays a reference because it
writes the same rows into the same tables and indexes, one commit per create, at the cells'
concurrency, with no service, HTTP or Python in the way: the database's own cost of a create's
rows, which the create row is read against (not a strict ceiling: six round trips where the
service takes one, and no PL/pgSQL). Columns follow `tasktrail.schema`; the values of a new
task come from the service's own `decide` and projector (`fold`, `task_row`), so a column added
to `tasks` is filled as the service fills it. Only what differs per transaction is made in SQL:
each pgbench client is its own user (`pgbench-u<client_id>`: no two clients wait for one stream
lock, as in the HTTP cells), each task a random uuid, each hash 64 hex digits, each time now(),
`seq` the locked head's plus one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql.expression import ClauseElement

from tasktrail.domain.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields
from tasktrail.domain.decide import decide
from tasktrail.domain.events import CURRENT_SCHEMA_VERSION, Event
from tasktrail.domain.evolve import fold
from tasktrail.events import store
from tasktrail.projections import inline
from tasktrail.schema import events

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)

# What differs per transaction, in pgbench's SQL. `:name` is a pgbench variable: client_id is
# pgbench's own, last_seq and head_hash come from the lock's RETURNING (\gset), ev_task_id and
# ev_hash from the event insert's.
USER_PREFIX = "pgbench-u"
USER = f"('{USER_PREFIX}' || :client_id::text)"
NEXT_SEQ = "(:last_seq::bigint + 1)"
HASH = "(md5(random()::text) || md5(random()::text))"  # 64 hex digits, like a sha256


def _dialect() -> Any:
    # The service's driver: its compiler writes the casts the service's statements carry.
    return psycopg_dialect.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's own


def _literal(value: object) -> str:
    """A SQL literal pgbench passes through untouched. pgbench takes `:word` for a variable
    anywhere, even inside quotes, and JSON and timestamps are full of colons: they are written
    as \\x3a in an escape string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple | dict):
        text = orjson.dumps(value).decode()
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = str(value)
    escaped = text.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a")
    return f"E'{escaped.replace(chr(10), chr(92) + 'n')}'"


def _sql(statement: ClauseElement, values: Mapping[str, object], *, column_keys: Any = None) -> str:
    """The statement as the service's driver receives it, each bound parameter replaced by a
    pgbench expression (`values`, str) or by the literal of its value: `values`, else the
    value bound in the statement itself."""
    compiled = statement.compile(dialect=_dialect(), column_keys=column_keys)
    bound = compiled.params

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            value = values[name]
            return value if isinstance(value, _Sql) else _literal(value)
        return _literal(bound[name])

    return _PLACEHOLDER.sub(replace, compiled.string)


class _Sql(str):
    """An expression to put in as it is, not a value to quote."""

    __slots__ = ()


def _sample_task() -> tuple[Event, dict[str, Any]]:
    """A new task as the service makes one: the created event and the read model's row."""
    user = "pgbench-u0"
    command = CreateTask(
        context=CommandContext(user_id=user, actor=user, request_id=None),
        task_id=str(uuid.uuid4()),
        fields=TaskFields(title="Call the garage about the brakes", priority=1, tags=("car",)),
    )
    (new,) = decide(None, command)
    unsealed = Event(
        user_id=user,
        seq=1,
        task_id=command.task_id,
        version=1,
        type=new.type.value,
        schema_version=CURRENT_SCHEMA_VERSION,
        data=new.data,
        data_hash=data_hash(new.data),
        occurred_at=datetime.now(UTC),
        actor=user,
        request_id=str(uuid.uuid4()),
        prev_hash=GENESIS_HASH,
        hash="",
    )
    event = dataclasses.replace(unsealed, hash=recompute_hash(unsealed))
    state = fold([event])
    assert state is not None
    return event, inline.task_row(state)


def remove_pgbench_rows(conninfo: str) -> int:
    """Delete what pgbench wrote (its users' events, tasks and streams); returns the events.

    Its rows have the service's shapes but not its content (random hashes, one task's data for
    every task): they are a measure of PostgreSQL, not service writes, and the checks after a
    run (`projections verify`, `audit verify`) are about what the service wrote.
    """
    pattern = USER_PREFIX + "%"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn, conn.transaction():
        # The log refuses DELETE (a trigger); a superuser steps around it for this transaction
        # only, as the tamper tests do. The benchmark's database is a scratch one of its own.
        conn.execute("SET LOCAL session_replication_role = replica")
        removed = conn.execute("DELETE FROM events WHERE user_id LIKE %s", (pattern,)).rowcount
        conn.execute("DELETE FROM tasks WHERE user_id LIKE %s", (pattern,))
        conn.execute("DELETE FROM user_streams WHERE user_id LIKE %s", (pattern,))
    return removed


def create_script() -> str:
    """The pgbench script of one create: `handle`'s statements for it, compiled for PostgreSQL
    (the module's docstring says why they are not the service's own call)."""
    event, row = _sample_task()
    lock = _sql(store.lock_statement("postgresql"), {"user_id": _Sql(USER)})
    event_row = store.event_row(event)
    event_values: dict[str, object] = {
        **event_row,
        "user_id": _Sql(USER),
        "actor": _Sql(USER),
        "seq": _Sql(NEXT_SEQ),
        "task_id": _Sql("gen_random_uuid()"),
        "version": 1,
        "data": event.data,  # the JSON text the service sends (a dict: rendered with orjson)
        "data_hash": _Sql(HASH),
        "occurred_at": _Sql("now()"),
        "request_id": _Sql("gen_random_uuid()::text"),
        "prev_hash": _Sql(":head_hash"),
        "hash": _Sql(HASH),
    }
    # `store.append` does not ask for the new row back; the script needs the task id and the
    # hash for the next statements (two short columns more on the wire).
    insert_event = _sql(
        events.insert().returning(events.c.task_id, events.c.hash),
        event_values,
        column_keys=list(event_row),
    )
    # The row's other columns (title, folded columns, tags, the served document and its ETag)
    # are the sample task's, as the projector wrote them: the same sizes as a real create.
    task_values: dict[str, object] = {
        **row,
        "id": _Sql(":ev_task_id"),
        "user_id": _Sql(USER),
        "created_at": _Sql("now()"),
        "updated_at": _Sql("now()"),
        "version": 1,
        "last_seq": _Sql(NEXT_SEQ),
    }
    upsert_task = _sql(inline.upsert_statement("postgresql"), task_values)
    # The head moves to the new event (the parameters `store.moved_head` gives the statement).
    head_values: dict[str, object] = {
        "head_user_id": _Sql(USER),
        "last_seq": _Sql(NEXT_SEQ),
        "head_hash": _Sql(":ev_hash"),
        "last_occurred_at": _Sql("now()"),
    }
    move_head = _sql(store.move_head_statement(), head_values)
    return "\n".join(
        (
            "BEGIN;",
            lock + " \\gset",
            insert_event + " \\gset ev_",
            upsert_task + ";",
            move_head + ";",
            "COMMIT;",
            "",
        )
    )


@dataclass(slots=True)
class PgbenchResult:
    clients: int
    seconds: int
    tps: float
    processed: int
    failed: int
    exit_code: int
    latencies: list[float] = field(default_factory=list)  # seconds, every transaction logged
    output_tail: str = ""


@dataclass(slots=True)
class RunningPgbench:
    pid: int
    clients: int
    seconds: int
    _process: subprocess.Popen[str]
    _logs: Path
    result: PgbenchResult | None = None

    def finish(self) -> PgbenchResult:
        out, err = self._process.communicate(timeout=self.seconds + 120)
        tps = _TPS.search(out)
        failed = _FAILED.search(out)
        processed = _PROCESSED.search(out)
        self.result = PgbenchResult(
            clients=self.clients,
            seconds=self.seconds,
            tps=float(tps.group(1)) if tps else 0.0,
            processed=int(processed.group(1)) if processed else 0,
            failed=int(failed.group(1)) if failed else 0,
            exit_code=self._process.returncode,
            latencies=_logged_latencies(self._logs),
            output_tail="\n".join((out + err).strip().splitlines()[-12:]),
        )
        return self.result


def _logged_latencies(folder: Path) -> list[float]:
    """Per-transaction latencies from pgbench's logs (-l): `client tx time_us script epoch us`
    per line; a failed transaction's time is not a number."""
    latencies: list[float] = []
    for path in folder.iterdir():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2].isdigit():
                latencies.append(int(parts[2]) / 1e6)
    return latencies


@contextmanager
def started_pgbench(
    url: str, script: str, clients: int, seconds: int, workdir: Path
) -> Iterator[RunningPgbench]:
    """pgbench with `script`, `clients` connections over up to 2 threads, for `seconds`;
    stopped (its own pid) if the block ends before it does."""
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "create.sql"
    script_path.write_text(script)
    logs = workdir / f"logs-{clients}-{time.monotonic_ns()}"
    logs.mkdir()
    command = [
        *(PGBENCH, "-n", "-M", "prepared", "-f", str(script_path)),
        *("-c", str(clients), "-j", str(min(2, clients)), "-T", str(seconds)),
        *("-l", "--log-prefix", str(logs / "tx")),
        url,
    ]
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    process = subprocess.Popen(  # noqa: S603 - a fixed program, our own arguments
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    running = RunningPgbench(process.pid, clients, seconds, process, logs)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
