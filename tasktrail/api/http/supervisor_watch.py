"""A worker of `serve --workers N` stops when its supervisor is gone.

uvicorn's supervisor starts the workers and stops them: on SIGTERM it sends each one SIGTERM and
waits for it. A supervisor that never gets that far (killed with SIGKILL or by the kernel's
out-of-memory killer; once in the tests, gone while the replacement for a killed worker was still
starting) leaves its workers running with no one to stop them: they keep the listening socket,
so a new `serve` cannot bind the port, and they keep their database connections. gunicorn's
workers watch for this; uvicorn's do not.

The watch costs nothing per request and polls nothing. A process that multiprocessing spawned
holds the read end of a pipe whose write end only its parent holds (`parent_process().sentinel`):
it becomes readable, at end of file, the moment the parent is gone. The event loop watches it,
and when it fires the worker sends itself SIGTERM, so it stops exactly as if the supervisor had
asked: live feeds end, open requests finish within `timeout_graceful_shutdown`, the pool closes.

A process that is not a spawned worker (`serve` with one worker, the tests' in-process apps) has
no parent sentinel and is not watched: its parent (a shell, systemd) going away is no reason to
stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

_log = structlog.get_logger("tasktrail.serve")


@contextmanager
def stopping_when_the_supervisor_is_gone() -> Iterator[None]:
    """Watch the supervisor from this worker's event loop while the block runs (the lifespan)."""
    supervisor = multiprocessing.parent_process()
    if supervisor is None or threading.current_thread() is not threading.main_thread():
        yield  # not a spawned worker, or not the thread that handles signals
        return
    loop = asyncio.get_running_loop()
    sentinel = supervisor.sentinel

    def gone() -> None:
        loop.remove_reader(sentinel)
        _log.warning("the supervisor is gone: this worker stops", supervisor_pid=supervisor.pid)
        signal.raise_signal(signal.SIGTERM)

    # Already at end of file if the supervisor died while this worker was starting: the reader
    # fires on the loop's next turn.
    loop.add_reader(sentinel, gone)
    try:
        yield
    finally:
        loop.remove_reader(sentinel)
