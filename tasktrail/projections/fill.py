"""Fill the shadow table from the log: in this process, or in several, each folding a share.

Folding is Python, one core a process; reading the log and taking the rows in is the server's
work, on its own cores. So on PostgreSQL the rebuild can hand disjoint shares of the tasks
(by a byte of the task id) to worker processes. They all read the log as of one snapshot: the
rebuild's reader exports it and every worker imports it before its first read, so together
they fold exactly the log the rebuild's catch-up starts from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tasktrail.projections import shadow
from tasktrail.projections.inline import task_values
from tasktrail.projections.replay import replayed_tasks
from tasktrail.projections.row_digest import row_digest

# The session time zone of the log's readers. psycopg hands timestamps over in the session's
# zone; in UTC they carry Python's own `timezone.utc` rather than a zoneinfo zone, and the fold's
# row digests and documents then subtract and format instants without a zone lookup each (the
# digest of a task took nearly twice as long with the server's `Etc/UTC`).
READING_TIME_ZONE = "UTC"
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")
_PROGRESS_SECONDS = 0.2
_CONNECT_TIMEOUT_SECONDS = 10


@dataclass
class Filled:
    """What went into the shadow table: events folded, and each task's row digest by id."""

    events: int = 0
    digests: dict[str, int] = field(default_factory=dict)

    def add(self, other: Filled) -> None:
        self.events += other.events
        self.digests.update(other.digests)


def fill_share(
    engine: Engine,
    reader: Connection,
    batch_size: int,
    part: tuple[int, int] = (0, 1),
    on_events: Callable[[int], None] = lambda _: None,
) -> Filled:
    """Fold the share `part` of the tasks as `reader` sees the log, into the shadow table in
    batches of short transactions (on SQLite the service's writers go on between them)."""
    filled = Filled()
    batch: list[tuple[Any, ...]] = []
    for task_id, state, count in replayed_tasks(reader, part=part):
        filled.events += count
        if state is None:
            continue  # a stream without a creation is no task
        values = task_values(state)
        filled.digests[task_id] = row_digest(values)
        batch.append(values)
        if len(batch) >= batch_size:
            shadow.write_batch(engine, batch)
            on_events(filled.events)
            batch.clear()
    shadow.write_batch(engine, batch)
    on_events(filled.events)
    return filled


def fill_in_processes(
    engine: Engine,
    reader: Connection,
    workers: int,
    batch_size: int,
    on_events: Callable[[int], None],
) -> Filled:
    """`fill_share` in `workers` processes, one share each, as of the snapshot of `reader`
    (a PostgreSQL REPEATABLE READ transaction, kept open until they are done).

    Each is `python -m tasktrail.projections.fill`: a process of its own that imports only what
    folding needs (multiprocessing's spawn would import the caller's main module again, the
    whole CLI), told its job on stdin (the URL holds a password: not on the command line), and
    answering on stdout with progress lines and, last, its digests.
    """
    # The exported snapshot lives as long as this transaction: it must not be ended as idle.
    reader.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
    snapshot = reader.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    job = {
        "url": engine.url.render_as_string(hide_password=False),
        "snapshot": snapshot,
        "parts": workers,
        "batch_size": batch_size,
    }
    shares: list[_Share] = []
    try:
        for k in range(workers):
            _Share.start({**job, "part": k}, shares)
        while any(share.running() for share in shares):
            on_events(sum(share.events for share in shares))
            failed = next((share for share in shares if share.failed()), None)
            if failed is not None:
                raise shadow.RebuildAborted(f"a rebuild worker failed: {failed.error()}")
            time.sleep(_PROGRESS_SECONDS)
        filled = Filled()
        for share in shares:
            filled.add(share.result())
        on_events(filled.events)
        return filled
    finally:
        for share in shares:
            share.stop()


class _Share:
    """One worker process and what it has said so far (read by a thread of its own)."""

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self.process = process
        self._errors = errors
        self.events = 0
        self._result: Filled | None = None
        self._garbled: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, job: dict[str, Any], shares: list[_Share]) -> None:
        """Start a worker, add it to `shares` (to be stopped whatever happens), send its job."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tasktrail.projections.fill"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A file, not a pipe: a worker that says much there must not block on a full pipe.
            stderr=(errors := tempfile.TemporaryFile()),  # noqa: SIM115 (closed by stop())
        )
        shares.append(cls(process, errors))
        stdin = _pipe(process.stdin)
        stdin.write(orjson.dumps({**job, "parent": os.getpid()}))
        stdin.close()

    def _read(self) -> None:
        try:
            for line in _pipe(self.process.stdout):
                message = orjson.loads(line)
                self.events = message["events"]
                if "digests" in message:
                    self._result = Filled(message["events"], message["digests"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            # Not our protocol: stop the worker rather than let it block on a pipe none reads.
            self._garbled = f"unreadable output from the worker: {error}"
            self.process.kill()

    def running(self) -> bool:
        return self.process.poll() is None or self._reader.is_alive()

    def failed(self) -> bool:
        code = self.process.poll()
        return code is not None and code != 0

    def error(self) -> str:
        if self._garbled is not None:
            return self._garbled
        self.process.wait()
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def result(self) -> Filled:
        self._reader.join()
        if self.process.wait() != 0 or self._result is None:
            raise shadow.RebuildAborted(f"a rebuild worker failed: {self.error()}")
        return self._result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # only on a failure elsewhere: its share is of no use any more
        self.process.wait()
        self._reader.join()
        _pipe(self.process.stdout).close()
        self._errors.close()


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:  # every stream of the worker is opened as a pipe
        raise RuntimeError("the worker process has no pipe")
    return stream


# --- in a worker process ------------------------------------------------------------------------


def _work(job: dict[str, Any]) -> None:
    snapshot = job["snapshot"]
    if not _SNAPSHOT_ID.match(snapshot):  # it is spelled into SQL: be sure of its shape
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    engine = create_engine(
        job["url"],
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={
            "application_name": "tasktrail-rebuild",
            "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
            # A server gone without a word (a dead host, a cut network) fails the read within a
            # minute, so the rebuild fails instead of waiting forever.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # An operator's long job: none of the service's request timeouts applies. Instants
            # in UTC: see READING_TIME_ZONE.
            "options": "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0 "
            f"-c TimeZone={READING_TIME_ZONE}",
        },
    )
    # The protocol goes to a copy of stdout; what anything else prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def on_events(count: int) -> None:
        if os.getppid() != job["parent"]:  # the rebuild is gone: its shadow table is no more
            raise RuntimeError("the rebuild that started this worker has ended")
        out.write(orjson.dumps({"events": count}) + b"\n")
        out.flush()

    try:
        with engine.connect() as reader:
            reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            reader.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            part = (job["part"], job["parts"])
            filled = fill_share(engine, reader, job["batch_size"], part, on_events)
            reader.rollback()
    finally:
        engine.dispose()
    out.write(orjson.dumps({"events": filled.events, "digests": filled.digests}) + b"\n")
    out.flush()


def _main() -> int:
    try:
        _work(orjson.loads(sys.stdin.buffer.read()))
    except Exception as error:  # noqa: BLE001 (any failure: the traceback, then one line)
        traceback.print_exc()
        reason = " ".join(str(error).split("\n")[:2])
        sys.stderr.write(f"{type(error).__name__}: {reason}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
