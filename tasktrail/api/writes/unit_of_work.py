"""The unit of work of a write: the route's command, handed to the write port with the
request's Idempotency-Key, answered once its transaction has committed.

The port (storage/port.py) keeps the command's events, the task's row and the key's answer in
one transaction, on SQLite in a worker thread, on PostgreSQL through `tasktrail_append`. Here is
what is HTTP about it: the answer is a response, a replay is the kept answer checked against this
request's fingerprint, a key still in use is a 409, and the live feeds hear of committed events.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.responses import Response

from tasktrail.api.services import services
from tasktrail.api.writes.idempotency import (
    IdempotencyKey,
    fingerprint,
    kept_answer,
    still_running,
    stored_replay,
)
from tasktrail.domain.commands import Command
from tasktrail.storage.port import KeyClaim, KeyInUse, Outcome, StoredAnswer, Write

# What the route answers for the state the write left (the task, or 204).
Respond = Callable[[Outcome], Response]


async def run_write(
    request: Request, command: Command, key: IdempotencyKey | None, respond: Respond
) -> Response:
    """Run the command in one transaction; with a key, replay or record its answer in it too."""
    parts = services(request)
    claim = None if key is None else KeyClaim(key.value, fingerprint(request))
    try:
        written = await parts.writes.write(Write(command, claim, respond, kept_answer))
    except KeyInUse:
        raise still_running() from None
    if isinstance(written, StoredAnswer):
        if claim is None:
            raise RuntimeError("a write without a key found a kept answer")
        return stored_replay(written, claim.fingerprint)
    parts.metrics.events_appended.inc(written.appended)  # counted once committed
    if written.appended:
        parts.feed_hub.announce(command.context.user_id)  # live feeds, after the COMMIT
    return written.answer
