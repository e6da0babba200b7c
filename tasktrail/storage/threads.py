"""Blocking database work in a worker thread, with a deadline on this side.

A thread blocked on a database that hangs cannot be interrupted, and before it even runs, a
request may wait for a free thread. So the whole wait (for a thread, then for the work) is
bounded by `TASKTRAIL_DATABASE_DEADLINE`: past it the caller gets `DatabaseUnavailable` (a 503)
and the thread is left to finish on its own (its connection comes back to the pool when the
database answers or the connection dies). A write left that way may still commit: its client got
no success, and a retry with the same `Idempotency-Key` replays it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

from tasktrail.database import DatabaseUnavailable

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def in_worker_thread(deadline: float, work: Callable[[*Ts], T], *args: *Ts) -> T:
    """Run `work(*args)` in a worker thread; `DatabaseUnavailable` past `deadline` seconds."""
    with anyio.move_on_after(deadline):
        return await anyio.to_thread.run_sync(work, *args, abandon_on_cancel=True)
    # Only the deadline leaves the block without returning.
    raise DatabaseUnavailable(f"the database did not answer within {deadline:g} seconds")
