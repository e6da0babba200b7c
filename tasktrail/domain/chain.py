"""The per-user hash chain: `data_hash`, the event `hash`, and checking a chain from its rows.

hash = sha256(canonical_json({every event field except position, hash and data})), where
`data_hash` stands in for `data` so that personal data can one day be erased without breaking the
chain, and `prev_hash` links each event to the one before it (64 zeros for a user's first event).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasktrail.domain.encoding import canonical_json, format_timestamp
from tasktrail.domain.events import Event, JsonObject

GENESIS_HASH = "0" * 64
_HEAD = re.compile(r"([0-9]{1,19}):([0-9a-f]{64})")  # ASCII only: str.isdigit takes "٣" too


def data_hash(data: JsonObject) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()


def hashed_fields(
    *,
    user_id: str,
    seq: int,
    task_id: str,
    version: int,
    type: str,
    schema_version: int,
    data_hash: str,
    occurred_at: datetime,
    actor: str,
    request_id: str | None,
    prev_hash: str,
) -> dict[str, Any]:
    """The object whose canonical encoding is hashed: the served event less position, hash, data."""
    return {
        "actor": actor,
        "data_hash": data_hash,
        "occurred_at": format_timestamp(occurred_at),
        "prev_hash": prev_hash,
        "request_id": request_id,
        "schema_version": schema_version,
        "seq": seq,
        "task_id": task_id,
        "type": type,
        "user_id": user_id,
        "version": version,
    }


def event_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


@dataclass(frozen=True, slots=True)
class HashTemplate:
    """An event's canonical encoding with the `prev_hash` value and the `seq` digits cut out.

    PostgreSQL's `tasktrail_append` (migration 0010) numbers and links the events it appends, so
    it alone knows an event's `seq` and `prev_hash`; the service encodes the rest. The hash is
    SHA-256 over `before_prev_hash + prev_hash + before_seq + seq digits + after_seq`: the very
    bytes `canonical_json` gives for the whole event, so the database never encodes JSON.
    """

    before_prev_hash: bytes
    before_seq: bytes
    after_seq: bytes

    def hash(self, prev_hash: str, seq: int) -> str:
        return hashlib.sha256(
            b"".join(
                (
                    self.before_prev_hash,
                    prev_hash.encode(),
                    self.before_seq,
                    str(seq).encode(),
                    self.after_seq,
                )
            )
        ).hexdigest()


# In canonical JSON every quote inside a string is escaped, so these byte strings (each with
# unescaped quotes) can only be the keys themselves, and keys are unique: each occurs once.
_PREV_HASH_SLOT = b'"prev_hash":"",'
_SEQ_SLOT = b',"seq":0,'


def hash_template(fields: dict[str, Any]) -> HashTemplate:
    """The template of `hashed_fields(...)`, whatever its `prev_hash` and `seq` say."""
    encoded = canonical_json({**fields, "prev_hash": "", "seq": 0})
    head, found_prev, rest = encoded.partition(_PREV_HASH_SLOT)
    middle, found_seq, tail = rest.partition(_SEQ_SLOT)
    if not (found_prev and found_seq):
        raise ValueError("the hashed fields lack prev_hash or seq")
    return HashTemplate(
        before_prev_hash=head + b'"prev_hash":"',
        before_seq=b'",' + middle + b',"seq":',
        after_seq=b"," + tail,
    )


def fields_of(event: Event) -> dict[str, Any]:
    """The object an event's hash is taken over, from the event's own fields."""
    return hashed_fields(
        user_id=event.user_id,
        seq=event.seq,
        task_id=event.task_id,
        version=event.version,
        type=event.type,
        schema_version=event.schema_version,
        data_hash=event.data_hash,
        occurred_at=event.occurred_at,
        actor=event.actor,
        request_id=event.request_id,
        prev_hash=event.prev_hash,
    )


def recompute_hash(event: Event) -> str:
    return event_hash(fields_of(event))


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int
    ok: bool
    head: str
    first_bad_seq: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class RecordedHead:
    """A head written down somewhere else: `user_streams`, or an auditor's notes (`SEQ:HASH`)."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> RecordedHead:
        match = _HEAD.fullmatch(text)
        if match is None or int(match.group(1)) < 1:
            raise ValueError("expected SEQ:HASH, a positive seq and 64 lowercase hex digits")
        return cls(int(match.group(1)), match.group(2))


def verify_chain(
    events: Iterable[Event],
    *,
    stream_head: RecordedHead | None = None,
    expected_head: RecordedHead | None = None,
) -> ChainReport:
    """Check one user's events, read in `seq` order, and name the first `seq` that breaks.

    Each event must be the next `seq`, link to the hash before it, and recompute both its
    `data_hash` and its `hash` from its stored fields. The chain must end where `stream_head`
    (the user's row in `user_streams`) says it does, so a cut tail shows; and the event at
    `expected_head.seq` must still have the hash an auditor recorded, so a chain rewritten
    consistently from end to end shows too.
    """
    head = previous = GENESIS_HASH
    count = 0
    for count, event in enumerate(events, start=1):
        problem = _first_problem(event, count, head, expected_head)
        if problem is None and stream_head is not None and event.seq > stream_head.seq:
            problem = (
                f"the event lies beyond the head recorded in user_streams (seq "
                f"{stream_head.seq}): it was added without going through the stream"
            )
        if problem is not None:
            return ChainReport(count - 1, False, head, count, problem)
        previous, head = head, event.hash
    if expected_head is not None and expected_head.seq > count:
        return ChainReport(
            count, False, head, expected_head.seq, f"seq {expected_head.seq} is not on the chain"
        )
    if stream_head is not None and stream_head.seq > count:
        return ChainReport(
            count,
            False,
            head,
            count + 1,
            f"the log ends at seq {count} but user_streams says it ends at seq "
            f"{stream_head.seq}: events were removed from its end",
        )
    if stream_head is not None and stream_head.hash != head:
        # Same length (longer and shorter were caught above), other head: the last event or
        # the stream's own record was changed.
        return ChainReport(
            max(count - 1, 0),
            False,
            previous,
            max(count, 1),
            "the chain's head does not match the head recorded in user_streams",
        )
    return ChainReport(count, True, head, None, None)


def _first_problem(
    event: Event, expected_seq: int, expected_prev: str, expected_head: RecordedHead | None
) -> str | None:
    if event.seq != expected_seq:
        return (
            f"expected seq {expected_seq} here but found seq {event.seq}: "
            "an event is missing or out of order"
        )
    if event.prev_hash != expected_prev:
        return "prev_hash does not match the hash of the event before it"
    if data_hash(event.data) != event.data_hash:
        return "data does not match its data_hash"
    if recompute_hash(event) != event.hash:
        return "hash does not recompute from the event's fields"
    if (
        expected_head is not None
        and expected_head.seq == event.seq
        and event.hash != expected_head.hash
    ):
        return "the hash differs from the head recorded earlier: the chain was rewritten"
    return None
