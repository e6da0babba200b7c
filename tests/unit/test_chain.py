"""The per-user hash chain: data_hash, the event hash, and verify_chain naming the first bad seq."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tasktrail.domain.chain import (
    GENESIS_HASH,
    RecordedHead,
    data_hash,
    event_hash,
    hashed_fields,
    recompute_hash,
    verify_chain,
)
from tasktrail.domain.events import Event

USER = "u_chain"
TASK_A = "01936d1e-0000-7000-8000-00000000000a"
TASK_B = "01936d1e-0000-7000-8000-00000000000b"
T0 = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)

# The fields of a served event (api.md "The event"), and those that go into `hash`.
SERVED_FIELDS = {
    "position",
    "user_id",
    "seq",
    "task_id",
    "version",
    "type",
    "schema_version",
    "data",
    "data_hash",
    "occurred_at",
    "actor",
    "request_id",
    "prev_hash",
    "hash",
}
HASHED_FIELDS = SERVED_FIELDS - {"position", "hash", "data"}


def sha256_of_canonical(value: Any) -> str:
    """api.md "Exact rules", written out independently of the code under test."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def build_chain(
    steps: list[tuple[str, int, str, Mapping[str, Any]]], *, prev_hash: str = GENESIS_HASH
) -> list[Event]:
    """A valid chain for USER from (task_id, version, type, data) steps, linked by the code."""
    chain: list[Event] = []
    for seq, (task_id, version, type, data) in enumerate(steps, start=1):
        event = rehash(
            Event(
                user_id=USER,
                seq=seq,
                task_id=task_id,
                version=version,
                type=type,
                schema_version=1,
                data=data,
                data_hash=data_hash(data),
                occurred_at=T0 + timedelta(seconds=seq),
                actor=USER,
                request_id=f"req-{seq}" if seq % 2 else None,
                prev_hash=prev_hash,
                hash="",
            )
        )
        chain.append(event)
        prev_hash = event.hash
    return chain


def rehash(event: Event, **changes: Any) -> Event:
    """The event with these fields changed and its own hash recomputed to match them."""
    changed = dataclasses.replace(event, **changes)
    return dataclasses.replace(changed, hash=recompute_hash(changed))


STEPS: list[tuple[str, int, str, Mapping[str, Any]]] = [
    (TASK_A, 1, "TaskCreated", {"title": "Buy milk", "tags": ["home"], "completed": False}),
    (TASK_B, 1, "TaskCreated", {"title": "Café ☕", "tags": [], "completed": True}),
    (TASK_A, 2, "TaskUpdated", {"changes": {"title": "Buy oat milk"}}),
    (TASK_A, 3, "TaskCompleted", {}),
    (TASK_B, 2, "TaskDeleted", {}),
]


@pytest.fixture
def chain() -> list[Event]:
    return build_chain(STEPS)


# data_hash and hash, against values computed here from the contract alone


def test_data_hash_of_empty_data_is_the_sha256_of_two_braces() -> None:
    """The data of TaskCompleted, {}, hashes to sha256(b"{}"), the 44136f... of api.md."""
    assert data_hash({}) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.mark.parametrize(
    "data",
    [
        {"title": "Buy milk", "description": None, "priority": 0, "tags": [], "completed": False},
        {
            "title": "Café ☕ 日本",
            "tags": ["Ελληνικά", "🥛"],
            "due_at": "2026-11-24T10:15:00.000000Z",
        },
        {"changes": {"tags": ["b", "a"], "priority": 3, "description": None}},
    ],
    ids=["created", "non-ascii", "nested-changes"],
)
def test_data_hash_is_the_lowercase_hex_sha256_of_the_canonical_data(data: dict[str, Any]) -> None:
    """data_hash equals sha256 over the api.md canonical encoding, in lowercase hex."""
    assert data_hash(data) == sha256_of_canonical(data)
    assert data_hash(data) == data_hash(dict(reversed(list(data.items()))))


def test_hashed_fields_are_every_served_field_but_position_hash_and_data() -> None:
    """The hashed object has exactly the event fields except position, hash and data."""
    fields = hashed_fields(
        user_id=USER,
        seq=1,
        task_id=TASK_A,
        version=1,
        type="TaskCompleted",
        schema_version=1,
        data_hash=data_hash({}),
        occurred_at=T0,
        actor=USER,
        request_id=None,
        prev_hash=GENESIS_HASH,
    )
    assert set(fields) == HASHED_FIELDS


def test_event_hash_matches_an_independent_computation_from_the_contract() -> None:
    """hash = sha256 of the canonical object of the hashed fields, occurred_at as served text."""
    occurred_at = datetime(2026, 11, 24, 11, 15, 0, 42, tzinfo=timezone(timedelta(hours=1)))
    event = Event(
        user_id="ü_user",
        seq=17,
        task_id=TASK_A,
        version=3,
        type="TaskCompleted",
        schema_version=1,
        data={},
        data_hash=data_hash({}),
        occurred_at=occurred_at,
        actor="ü_user",
        request_id=None,
        prev_hash="9a1c" + "0" * 60,
        hash="",
        position=1042,
    )
    expected = sha256_of_canonical(
        {
            "user_id": "ü_user",
            "seq": 17,
            "task_id": TASK_A,
            "version": 3,
            "type": "TaskCompleted",
            "schema_version": 1,
            "data_hash": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "occurred_at": "2026-11-24T10:15:00.000042Z",
            "actor": "ü_user",
            "request_id": None,
            "prev_hash": "9a1c" + "0" * 60,
        }
    )
    assert recompute_hash(event) == expected
    assert (
        event_hash(
            hashed_fields(
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
        )
        == expected
    )


def test_every_hash_in_a_built_chain_recomputes_independently(chain: list[Event]) -> None:
    """Each event's hash is the contract's sha256, and links to the hash before it."""
    prev = GENESIS_HASH
    for event in chain:
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
        served = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
        fields["occurred_at"] = served.replace("+00:00", "Z")
        assert event.prev_hash == prev
        assert event.data_hash == sha256_of_canonical(event.data)
        assert event.hash == sha256_of_canonical(fields)
        prev = event.hash


def test_the_hash_stands_without_the_data_so_data_can_be_erased(chain: list[Event]) -> None:
    """The hash depends on data only through data_hash: other data, same data_hash, same hash."""
    erased = dataclasses.replace(chain[0], data={})
    assert recompute_hash(erased) == chain[0].hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prev_hash", "f" * 64),
        ("seq", 99),
        ("type", "TaskDeleted"),
        ("actor", "someone-else"),
        ("request_id", "req-other"),
        ("occurred_at", T0 + timedelta(microseconds=1)),
        ("data_hash", "0" * 64),
        ("schema_version", 2),
    ],
    ids=["prev-hash", "seq", "type", "actor", "request-id", "occurred-at", "data-hash", "schema"],
)
def test_the_hash_covers_every_hashed_field(chain: list[Event], field: str, value: Any) -> None:
    """Changing any hashed field changes the recomputed hash."""
    assert recompute_hash(dataclasses.replace(chain[1], **{field: value})) != chain[1].hash


# verify_chain


def test_a_good_chain_verifies_with_its_last_hash_as_head(chain: list[Event]) -> None:
    """An untouched chain is ok, counts its events and reports its last hash as head."""
    report = verify_chain(iter(chain))
    assert (report.ok, report.events, report.head, report.first_bad_seq, report.reason) == (
        True,
        len(STEPS),
        chain[-1].hash,
        None,
        None,
    )


def test_an_empty_chain_is_ok_with_a_head_of_64_zeros() -> None:
    """A user with no events has a valid chain whose head is 64 zeros."""
    report = verify_chain([])
    assert (report.ok, report.events, report.head, report.first_bad_seq, report.reason) == (
        True,
        0,
        "0" * 64,
        None,
        None,
    )
    assert GENESIS_HASH == "0" * 64


def edit_data(chain: list[Event]) -> list[Event]:
    """Event 3's data edited in place, its data_hash and hash left as stored."""
    return [*chain[:2], dataclasses.replace(chain[2], data={"changes": {"title": "x"}}), *chain[3:]]


def edit_data_hash(chain: list[Event]) -> list[Event]:
    """Event 3's data and data_hash both edited, its hash left as stored."""
    data = {"changes": {"title": "x"}}
    edited = dataclasses.replace(chain[2], data=data, data_hash=data_hash(data))
    return [*chain[:2], edited, *chain[3:]]


def edit_field(name: str, value: Any) -> Callable[[list[Event]], list[Event]]:
    def edit(chain: list[Event]) -> list[Event]:
        return [*chain[:2], dataclasses.replace(chain[2], **{name: value}), *chain[3:]]

    return edit


def rewrite_event_three(chain: list[Event]) -> list[Event]:
    """Event 3 rewritten consistently (new data, data_hash and hash): event 4 no longer links."""
    data = {"changes": {"title": "x"}}
    return [*chain[:2], rehash(chain[2], data=data, data_hash=data_hash(data)), *chain[3:]]


def relink_event_three(chain: list[Event]) -> list[Event]:
    """Event 3 pointing at a wrong prev_hash, with its own hash recomputed to match."""
    return [*chain[:2], rehash(chain[2], prev_hash="ab" * 32), *chain[3:]]


def wrong_genesis(chain: list[Event]) -> list[Event]:
    """A chain whose first event does not start from 64 zeros, every hash recomputed."""
    return build_chain(STEPS, prev_hash="1" * 64)


BROKEN = [
    pytest.param(edit_data, 3, "data", id="edited-data"),
    pytest.param(edit_data_hash, 3, "recompute", id="edited-data-and-data-hash"),
    pytest.param(edit_field("actor", "mallory"), 3, "recompute", id="edited-actor"),
    pytest.param(edit_field("type", "TaskDeleted"), 3, "recompute", id="edited-type"),
    pytest.param(edit_field("task_id", TASK_B), 3, "recompute", id="edited-task-id"),
    pytest.param(edit_field("version", 7), 3, "recompute", id="edited-version"),
    pytest.param(
        edit_field("occurred_at", T0 + timedelta(days=1)), 3, "recompute", id="edited-occurred-at"
    ),
    pytest.param(edit_field("request_id", "forged"), 3, "recompute", id="edited-request-id"),
    pytest.param(edit_field("hash", "c" * 64), 3, "recompute", id="edited-hash"),
    pytest.param(lambda chain: [*chain[:2], *chain[3:]], 3, "missing", id="missing-event"),
    pytest.param(lambda chain: chain[1:], 1, "missing", id="missing-first-event"),
    pytest.param(
        lambda chain: [chain[0], chain[2], chain[1], *chain[3:]], 2, "order", id="swapped-events"
    ),
    pytest.param(
        lambda chain: [*chain[:3], chain[2], *chain[3:]], 4, "order", id="duplicated-event"
    ),
    pytest.param(relink_event_three, 3, "prev_hash", id="wrong-prev-hash"),
    pytest.param(rewrite_event_three, 4, "prev_hash", id="rewritten-event-breaks-the-next-link"),
    pytest.param(wrong_genesis, 1, "prev_hash", id="first-event-not-linked-to-genesis"),
]


@pytest.mark.parametrize(("tamper", "first_bad_seq", "reason_word"), BROKEN)
def test_a_tampered_chain_names_the_first_bad_seq_with_a_reason(
    chain: list[Event],
    tamper: Callable[[list[Event]], list[Event]],
    first_bad_seq: int,
    reason_word: str,
) -> None:
    """A broken chain is not ok, names the lowest bad seq, and says what broke there."""
    report = verify_chain(tamper(chain))
    assert (report.ok, report.first_bad_seq) == (False, first_bad_seq)
    assert report.reason is not None
    assert reason_word in report.reason


def test_only_the_first_of_several_breaks_is_named(chain: list[Event]) -> None:
    """With breaks at seq 2 and 4, the report names seq 2."""
    broken = [
        chain[0],
        dataclasses.replace(chain[1], actor="mallory"),
        chain[2],
        dataclasses.replace(chain[3], data={"x": 1}),
        chain[4],
    ]
    assert verify_chain(broken).first_bad_seq == 2


def test_a_chain_of_one_user_verifies_whatever_its_tasks(chain: list[Event]) -> None:
    """Events of different tasks interleave on one user's chain and it still verifies."""
    assert {event.task_id for event in chain} == {TASK_A, TASK_B}
    assert verify_chain(chain).ok


def test_events_of_a_user_without_a_recorded_head_are_reported_from_seq_1() -> None:
    """The service records every user it writes for; events beyond a head of 0 are foreign."""
    events = build_chain(
        [(TASK_A, 1, "TaskCreated", {"title": "a"}), (TASK_A, 2, "TaskCompleted", {})]
    )
    report = verify_chain(events, stream_head=RecordedHead(0, GENESIS_HASH))
    assert (report.ok, report.first_bad_seq, report.events) == (False, 1, 0)


def test_a_recorded_head_for_an_empty_log_that_is_not_genesis_is_reported_at_seq_1() -> None:
    """No events, but user_streams holds another head: bad at seq 1, not at a seq of 0."""
    report = verify_chain([], stream_head=RecordedHead(0, "f" * 64))
    assert (report.ok, report.first_bad_seq, report.events) == (False, 1, 0)
