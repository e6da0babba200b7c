"""Blocking database work of a request in a worker thread, within the database's deadline
(storage/threads.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

from fastapi import Request

from tasktrail.api.services import services
from tasktrail.storage.threads import in_worker_thread

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def in_thread(request: Request, work: Callable[[*Ts], T], *args: *Ts) -> T:
    """Run `work(*args)` in a worker thread; `DatabaseUnavailable` (a 503) past the deadline."""
    return await in_worker_thread(services(request).settings.database_deadline, work, *args)
