"""The write port: "persist this decision, with its idempotency record", as one interface.

A route hands the port a command, the request's Idempotency-Key (if any) and how to answer the
state the write leaves. The adapter (sqlite/ or postgres/) decides the command on the task's
state, appends the events, writes the task's row and keeps the answer under the key, all in one
transaction, and hands back the answer once that transaction has committed; or, when the key
was already used, the answer its first request kept. Nothing here knows HTTP: an answer is a
status, the headers a replay repeats and a body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

from tasktrail.domain.commands import Command
from tasktrail.domain.document import TaskDocument, task_document
from tasktrail.domain.events import Event
from tasktrail.domain.state import TaskState

# A key's answer is replayed for 24 h; after that the key may be used afresh. On PostgreSQL row
# security lets the background sweep reach keys of this age and older (migration 0014): change both.
KEY_LIFETIME = timedelta(hours=24)
# How long, at most, a duplicate waits for the first request of its key before it is refused
# (`KeyInUse`, a 409).
WAIT_FOR_FIRST_MS = 5_000


def key_wait_ms(database_deadline: float) -> int:
    """A duplicate's wait for its first request: half the database's deadline, and at most
    `WAIT_FOR_FIRST_MS`. The deadline ends the whole request (a 503, the connection cut); the
    wait must end first, with time left for the 409 to be answered."""
    return max(1, min(WAIT_FOR_FIRST_MS, int(database_deadline * 500)))  # 0 would wait forever


R = TypeVar("R")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class Outcome:
    """The task after the command (None if it never existed) and the events it appends.

    An answer is made from the state and its document, inside the write, before the events are
    stored: on PostgreSQL the database numbers and links them, so the events `respond` sees have
    no `seq`, links or hashes yet, and the state's `last_seq` is not yet known (`Written.events`
    has them as stored). The task's served document is made once, on first use, and shared by
    whoever needs it: the adapter writes it into the task's row and the route sends it.
    """

    __slots__ = ("_document", "events", "state")

    def __init__(
        self, state: TaskState | None, events: list[Event], document: TaskDocument | None = None
    ) -> None:
        self.state = state
        self.events = events
        self._document = document  # given when made already, for a state that serves the same

    @property
    def document(self) -> TaskDocument:
        if self._document is None:
            if self.state is None:
                raise RuntimeError("a write that leaves no task has no document")
            self._document = task_document(self.state)
        return self._document


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A write's Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """An answer as a key keeps it: the status, the headers a replay repeats, the body."""

    status_code: int
    headers: dict[str, str]
    body: bytes

    @property
    def kept(self) -> bool:
        """Only success is kept: an error rolls the write back, and its key with it."""
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The key was taken: the answer its first request kept, and that request's fingerprint."""

    fingerprint: str
    status_code: int
    headers: dict[str, str] | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Written(Generic[R]):
    """The write committed (or had nothing to write): its answer, and the events it appended as
    the log holds them (numbered and linked)."""

    answer: R
    events: list[Event]

    @property
    def appended(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True)
class Write(Generic[R]):
    """What a route hands the port: the command; the key's claim, if the request has one; how
    to answer the state the write leaves (inside the transaction); and what of that answer the
    key keeps."""

    command: Command
    claim: KeyClaim | None
    respond: Callable[[Outcome], R]
    keep: Callable[[R], KeptAnswer]

    def kept(self, answer: R) -> KeptAnswer | None:
        """What the key keeps of `answer`; None without a key."""
        return None if self.claim is None else self.keep(answer)


class KeyInUse(Exception):
    """The key's first request is still running, past `WAIT_FOR_FIRST_MS`: nothing was written."""


class WritePort(Protocol):
    async def write(self, write: Write[R]) -> Written[R] | StoredAnswer:
        """Decide the command, persist its events and the task's row, and (with a claim) keep
        the answer under the key, in one transaction; `respond` makes the answer inside it.
        `StoredAnswer` when the key was taken. Domain errors, and whatever `respond` raises,
        leave nothing written; `KeyInUse` too."""
        ...
