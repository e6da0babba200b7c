"""Tamper evidence: the verify route and `tasktrail audit verify` on a log an attacker rewrote.

The attacker has the database: each tampering runs with the append-only triggers off (on
PostgreSQL `session_replication_role = replica` for one transaction, on SQLite the triggers are
dropped and recreated as migration 0001 makes them, in the same transaction). Only the test's own
user is touched, and every user built here is erased afterwards, so the shared database keeps
nothing broken that a full `audit verify` could trip on.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update

from tasktrail.events.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.events.types import Event
from tasktrail.schema import events, tasks, user_streams
from tests.conftest import Api, auth, new_user_id
from tests.processes import run_cli

PROBLEM_JSON = "application/problem+json"
LOG_LENGTH = 5
SQLITE_TRIGGER = (
    "CREATE TRIGGER events_refuse_{op} BEFORE {OP} ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only: {OP} refused'); END"
)


# --- the attacker -------------------------------------------------------------------------------


@contextmanager
def attack(engine: Engine) -> Iterator[Connection]:
    """One transaction in which the append-only triggers do not fire; they hold again after it."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn
            return
        for operation in ("UPDATE", "DELETE"):
            conn.execute(text(f"DROP TRIGGER events_refuse_{operation.lower()}"))
        try:
            yield conn
        finally:
            for operation in ("UPDATE", "DELETE"):
                conn.execute(text(SQLITE_TRIGGER.format(op=operation.lower(), OP=operation)))


def stored_events(conn: Connection, user_id: str) -> list[Event]:
    rows = conn.execute(
        select(*event_columns()).where(events.c.user_id == user_id).order_by(events.c.seq)
    )
    return [event_from_row(row._mapping) for row in rows]


def at_seq(user_id: str, seq: int) -> Any:
    return (events.c.user_id == user_id) & (events.c.seq == seq)


def edit_data(conn: Connection, user_id: str) -> None:
    conn.execute(update(events).where(at_seq(user_id, 3)).values(data={"forged": True}))


def edit_actor(conn: Connection, user_id: str) -> None:
    conn.execute(update(events).where(at_seq(user_id, 2)).values(actor="mallory"))


def delete_seq_2(conn: Connection, user_id: str) -> None:
    conn.execute(delete(events).where(at_seq(user_id, 2)))


def swap_seq_2_and_3(conn: Connection, user_id: str) -> None:
    """Exchange the seq of events 2 and 3, through -1 because (user_id, seq) is unique."""
    conn.execute(update(events).where(at_seq(user_id, 2)).values(seq=-1))
    conn.execute(update(events).where(at_seq(user_id, 3)).values(seq=2))
    conn.execute(update(events).where(at_seq(user_id, -1)).values(seq=3))


def cut_tail(conn: Connection, user_id: str) -> None:
    conn.execute(delete(events).where((events.c.user_id == user_id) & (events.c.seq > 3)))


def append_unrecorded(conn: Connection, user_id: str) -> None:
    """A sixth event, correctly linked and hashed, that user_streams never heard of."""
    last = stored_events(conn, user_id)[-1]
    forged = dataclasses.replace(
        last, seq=last.seq + 1, version=last.version + 1, prev_hash=last.hash, hash=""
    )
    forged = dataclasses.replace(forged, hash=recompute_hash(forged))
    row = {column.name: getattr(forged, column.name) for column in event_columns()}
    del row["position"]
    row["task_id"] = uuid.UUID(forged.task_id)
    conn.execute(insert(events).values(**row))


def forge_stream_head(conn: Connection, user_id: str) -> None:
    """Every event still recomputes, but user_streams now names another head."""
    where = user_streams.c.user_id == user_id
    conn.execute(update(user_streams).where(where).values(head_hash="b" * 64))


def rewrite_chain(conn: Connection, user_id: str) -> None:
    """Forge event 1's data and rehash the whole chain, and the head in user_streams after it."""
    prev_hash = GENESIS_HASH
    for event in stored_events(conn, user_id):
        data = {**event.data, "title": "forged"} if event.seq == 1 else dict(event.data)
        forged = dataclasses.replace(
            event, data=data, data_hash=data_hash(data), prev_hash=prev_hash, hash=""
        )
        forged = dataclasses.replace(forged, hash=recompute_hash(forged))
        conn.execute(
            update(events)
            .where(events.c.position == event.position)
            .values(
                data=data, data_hash=forged.data_hash, prev_hash=forged.prev_hash, hash=forged.hash
            )
        )
        prev_hash = forged.hash
    conn.execute(
        update(user_streams).where(user_streams.c.user_id == user_id).values(head_hash=prev_hash)
    )


def erase_user(engine: Engine, user_id: str) -> None:
    with attack(engine) as conn:
        conn.execute(delete(events).where(events.c.user_id == user_id))
        conn.execute(delete(user_streams).where(user_streams.c.user_id == user_id))
        conn.execute(delete(tasks).where(tasks.c.user_id == user_id))


# --- the log under attack -----------------------------------------------------------------------


def build_log(api: Api) -> None:
    """Five events: created, updated, completed, created, updated."""
    first = api.create(title="first")
    assert api.request("PATCH", f"/{first['id']}", json={"title": "renamed"}).status_code == 200
    assert api.request("PATCH", f"/{first['id']}/complete").status_code == 200
    second = api.create(title="second")
    assert api.request("PATCH", f"/{second['id']}", json={"priority": 2}).status_code == 200


@pytest.fixture
def log(api: Api, engine: Engine) -> Iterator[Api]:
    """The test's user with a five-event log, erased afterwards whatever was done to it."""
    try:
        build_log(api)
        assert sorted(hashes(engine, api.user_id)) == list(range(1, LOG_LENGTH + 1))
        yield api
    finally:
        erase_user(engine, api.user_id)


def hashes(engine: Engine, user_id: str) -> dict[int, str]:
    """The stored hash of each seq of the user."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.seq, events.c.hash).where(events.c.user_id == user_id)
        ).all()
    return {row.seq: row.hash for row in rows}


def stream_head(engine: Engine, user_id: str) -> tuple[int, str] | None:
    columns = (user_streams.c.last_seq, user_streams.c.head_hash)
    with engine.connect() as conn:
        row = conn.execute(select(*columns).where(user_streams.c.user_id == user_id)).one_or_none()
    return None if row is None else (row.last_seq, row.head_hash)


def verify(
    client: TestClient, user_id: str, params: Any = None, headers: dict[str, str] | None = None
) -> Any:
    headers = auth("auditor-on-duty", role="auditor") if headers is None else headers
    return client.get(f"/api/audit/users/{user_id}/verify", params=params, headers=headers)


def report(client: TestClient, user_id: str, expected_head: str | None = None) -> dict[str, Any]:
    response = verify(
        client, user_id, None if expected_head is None else {"expected_head": expected_head}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"user_id", "events", "ok", "head", "first_bad_seq", "reason"}
    assert body["user_id"] == user_id
    return body


def intact(user_id: str, events: int, head: str) -> dict[str, Any]:
    """The whole body of a report on a chain that verifies."""
    return {
        "user_id": user_id,
        "events": events,
        "ok": True,
        "head": head,
        "first_bad_seq": None,
        "reason": None,
    }


# --- untouched logs -----------------------------------------------------------------------------


def test_an_untouched_log_verifies_with_its_stream_head(
    client: TestClient, engine: Engine, log: Api
) -> None:
    """Nothing changed: ok, every event counted, and the head is the one user_streams records."""
    head = stream_head(engine, log.user_id)
    assert head is not None
    assert head == (LOG_LENGTH, hashes(engine, log.user_id)[LOG_LENGTH])
    assert report(client, log.user_id) == intact(log.user_id, LOG_LENGTH, head[1])


EXPECTED_HEADS: dict[str, tuple[Callable[[dict[int, str]], str], int | None]] = {
    "first-on-chain": (lambda stored: f"1:{stored[1]}", None),
    "middle-on-chain": (lambda stored: f"3:{stored[3]}", None),
    "head-on-chain": (lambda stored: f"{LOG_LENGTH}:{stored[LOG_LENGTH]}", None),
    "other-hash-at-3": (lambda _: f"3:{'f' * 64}", 3),
    "beyond-the-end": (lambda _: f"{LOG_LENGTH + 5}:{'a' * 64}", LOG_LENGTH + 5),
}


@pytest.mark.parametrize(
    ("expected_head", "first_bad_seq"), EXPECTED_HEADS.values(), ids=EXPECTED_HEADS.keys()
)
def test_an_untouched_log_holds_to_a_recorded_head_only_if_it_is_on_the_chain(
    client: TestClient,
    engine: Engine,
    log: Api,
    expected_head: Callable[[dict[int, str]], str],
    first_bad_seq: int | None,
) -> None:
    """A recorded head the chain holds keeps it ok; one it does not is bad at the recorded seq."""
    body = report(client, log.user_id, expected_head(hashes(engine, log.user_id)))
    assert (body["ok"], body["first_bad_seq"]) == (first_bad_seq is None, first_bad_seq)
    assert (body["reason"] is None) == (first_bad_seq is None), body["reason"]
    if first_bad_seq is None:
        assert body["events"] == LOG_LENGTH


def test_a_user_without_events_verifies_with_a_head_of_zeros(
    client: TestClient, user_id: str
) -> None:
    """No events at all: 200, events 0, ok, and the genesis head of 64 zeros."""
    assert report(client, user_id) == intact(user_id, 0, "0" * 64)
    body = report(client, user_id, f"1:{'a' * 64}")
    assert (body["ok"], body["first_bad_seq"]) == (False, 1)


# --- tampered logs ------------------------------------------------------------------------------


TAMPERINGS: list[tuple[Callable[[Connection, str], None], int, str]] = [
    (edit_data, 3, r"\bdata\b"),
    (edit_actor, 2, r"\bhash\b"),
    (delete_seq_2, 2, r"missing|out of order"),
    (swap_seq_2_and_3, 2, r"out of order|prev_hash"),
    (cut_tail, 4, r"\bend\b|removed"),
    (append_unrecorded, LOG_LENGTH + 1, r"user_streams|head"),
    (forge_stream_head, LOG_LENGTH, r"user_streams"),  # no event is bad: the last seq is named
]
TAMPERING_IDS = [
    *("edit-data", "edit-actor", "delete", "swap", "cut-tail"),
    *("append-unrecorded", "forge-stream-head"),
]
BEFORE_THE_BREAK = [(tamper, seq) for tamper, seq, _ in TAMPERINGS[:-1]]


@pytest.mark.parametrize(("tamper", "first_bad_seq", "reason"), TAMPERINGS, ids=TAMPERING_IDS)
def test_a_tampered_log_is_reported_at_its_first_bad_seq_with_a_reason(
    client: TestClient,
    engine: Engine,
    log: Api,
    tamper: Callable[[Connection, str], None],
    first_bad_seq: int,
    reason: str,
) -> None:
    """Each tampering makes verify say not ok, name the lowest bad seq, and say why."""
    with attack(engine) as conn:
        tamper(conn, log.user_id)
    body = report(client, log.user_id)
    assert body["ok"] is False
    assert body["first_bad_seq"] == first_bad_seq
    assert re.search(reason, body["reason"]), body["reason"]


@pytest.mark.parametrize(("tamper", "first_bad_seq"), BEFORE_THE_BREAK, ids=TAMPERING_IDS[:-1])
def test_a_broken_report_counts_only_the_events_before_the_first_bad_seq(
    client: TestClient,
    engine: Engine,
    log: Api,
    tamper: Callable[[Connection, str], None],
    first_bad_seq: int,
) -> None:
    """Not ok: `events` and `head` describe the good chain before the break, as the CLI says."""
    before = hashes(engine, log.user_id)
    with attack(engine) as conn:
        tamper(conn, log.user_id)
    body = report(client, log.user_id)
    assert (body["events"], body["head"]) == (
        first_bad_seq - 1,
        before.get(first_bad_seq - 1, GENESIS_HASH),
    )


def test_verify_closes_its_cursor_when_it_stops_at_a_break(
    client: TestClient, engine: Engine, log: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping at the first bad seq leaves no server-side cursor to be garbage-collected open."""
    with attack(engine) as conn:
        edit_data(conn, log.user_id)
    leaked: list[Any] = []
    with monkeypatch.context() as patch:
        patch.setattr(sys, "unraisablehook", leaked.append)
        assert report(client, log.user_id)["first_bad_seq"] == 3
        gc.collect()
    assert [f"{leak.object!r}: {leak.exc_value}" for leak in leaked] == []


def test_a_cut_tail_with_a_moved_stream_head_is_caught_by_the_recorded_head(
    client: TestClient, engine: Engine, log: Api
) -> None:
    """Cutting the tail and moving user_streams back hides from verify, not from a recorded head."""
    recorded = hashes(engine, log.user_id)
    with attack(engine) as conn:
        cut_tail(conn, log.user_id)
        conn.execute(
            update(user_streams)
            .where(user_streams.c.user_id == log.user_id)
            .values(last_seq=3, head_hash=recorded[3])
        )
    assert report(client, log.user_id)["ok"] is True
    body = report(client, log.user_id, f"{LOG_LENGTH}:{recorded[LOG_LENGTH]}")
    assert (body["ok"], body["first_bad_seq"]) == (False, LOG_LENGTH)


@pytest.mark.parametrize("seq", [3, LOG_LENGTH], ids=["recorded-mid-chain", "recorded-head"])
def test_a_consistently_rewritten_chain_is_caught_only_by_a_recorded_head(
    client: TestClient, engine: Engine, log: Api, seq: int
) -> None:
    """A chain rehashed end to end verifies on its own; the head recorded before it does not."""
    stored = hashes(engine, log.user_id)
    with attack(engine) as conn:
        rewrite_chain(conn, log.user_id)
    new_head = hashes(engine, log.user_id)[LOG_LENGTH]
    assert new_head != stored[LOG_LENGTH]
    assert stream_head(engine, log.user_id) == (LOG_LENGTH, new_head)
    assert report(client, log.user_id) == intact(log.user_id, LOG_LENGTH, new_head)
    body = report(client, log.user_id, f"{seq}:{stored[seq]}")
    assert body["ok"] is False
    # api.md: "with expected_head that is not on the chain, ok is false and first_bad_seq is
    # the expected seq" -- every rewritten event recomputes, so nothing earlier is bad.
    assert body["first_bad_seq"] == seq
    assert re.search(r"rewritten|recorded", body["reason"]), body["reason"]


def test_verify_writes_nothing(client: TestClient, engine: Engine, log: Api) -> None:
    """Audit routes never write: the user's rows stay as they were, none appear for a new user."""

    def counts(user: str) -> tuple[int, int, int]:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.user_id == user)
                ).scalar_one()
                for table in (events, user_streams, tasks)
            )

    before = counts(log.user_id)
    assert before == (LOG_LENGTH, 1, 2)
    stream_before = stream_head(engine, log.user_id)
    report(client, log.user_id)
    report(client, log.user_id, f"{LOG_LENGTH + 5}:{'a' * 64}")
    stranger = new_user_id()
    report(client, stranger)
    assert counts(log.user_id) == before
    assert stream_head(engine, log.user_id) == stream_before
    assert counts(stranger) == (0, 0, 0)


# --- who may verify, and with what --------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= set(body)
    assert ("errors" in body) == (status == 422)
    return body


def test_verify_without_a_token_is_401(client: TestClient, user_id: str) -> None:
    """No Authorization header: 401 with the bearer challenge."""
    response = verify(client, user_id, headers={})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "claims",
    [{}, {"role": "admin"}, {"roles": ["reader", "writer"]}],
    ids=["no-role", "other-role", "other-roles-list"],
)
def test_verify_is_403_for_a_non_auditor_even_on_their_own_log(
    client: TestClient, user_id: str, claims: dict[str, Any]
) -> None:
    """A user's own valid token, without the auditor role, does not open the audit API."""
    assert_problem(verify(client, user_id, headers=auth(user_id, **claims)), 403)


MALFORMED_HEADS = {
    "not-seq-hash": "abc",
    "hash-not-hex": "3:xyz",
    "seq-zero": "0:" + "0" * 64,
    "missing-hash": "3:",
    "missing-colon": "3",
    "missing-seq": ":" + "a" * 64,
    "negative-seq": "-1:" + "a" * 64,
    "short-hash": "3:" + "a" * 63,
    "non-ascii-digit-seq": "\u0663:" + "a" * 64,  # ARABIC-INDIC DIGIT THREE, not a decimal seq
}


@pytest.mark.parametrize("expected_head", MALFORMED_HEADS.values(), ids=MALFORMED_HEADS.keys())
def test_a_malformed_expected_head_is_422(
    client: TestClient, user_id: str, expected_head: str
) -> None:
    """expected_head must be SEQ:HASH with a positive seq and a SHA-256 hex hash."""
    body = assert_problem(verify(client, user_id, {"expected_head": expected_head}), 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "expected_head"]]


def test_an_unknown_query_parameter_on_verify_is_422(client: TestClient, user_id: str) -> None:
    """api.md: an unknown query parameter is 422, here as on every route (a typo is not silence)."""
    response = verify(client, user_id, {"expected_hed": f"1:{'a' * 64}"})
    body = assert_problem(response, 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "expected_hed"]]


# --- the command line ---------------------------------------------------------------------------


def cli_verify(database_url: str, cwd: Path, *args: str) -> Any:
    return run_cli("audit", "verify", *args, cwd=cwd, TASKTRAIL_DATABASE_URL=database_url)


def test_the_cli_exits_0_on_an_untouched_log(database_url: str, tmp_path: Path, log: Api) -> None:
    """`tasktrail audit verify --user U` on a log nobody touched: ok line, exit 0."""
    result = cli_verify(database_url, tmp_path, "--user", log.user_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok {log.user_id}: {LOG_LENGTH} events" in result.stdout
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("tamper", "with_recorded_head", "first_bad_seq"),
    [(edit_data, False, 3), (rewrite_chain, True, LOG_LENGTH)],
    ids=["edit-data", "rewrite-against-expected-head"],
)
def test_the_cli_exits_1_naming_the_first_bad_seq(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    log: Api,
    tamper: Callable[[Connection, str], None],
    with_recorded_head: bool,
    first_bad_seq: int,
) -> None:
    """A tampered log (a rewritten one against --expected-head): BROKEN U: first bad seq N, exit 1."""
    recorded = f"{LOG_LENGTH}:{hashes(engine, log.user_id)[LOG_LENGTH]}"
    with attack(engine) as conn:
        tamper(conn, log.user_id)
    extra = ("--expected-head", recorded) if with_recorded_head else ()
    result = cli_verify(database_url, tmp_path, "--user", log.user_id, *extra)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN {log.user_id}: first bad seq {first_bad_seq}: " in result.stdout


def test_the_cli_refuses_a_malformed_expected_head_with_exit_2(tmp_path: Path) -> None:
    """A malformed --expected-head exits 2, before opening any database, and says why."""
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    result = cli_verify(url, tmp_path, "--user", "someone", "--expected-head", "3:xyz")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--expected-head" in result.stderr
    assert not (tmp_path / "never-opened.db").exists()


@pytest.mark.parametrize("user_id", ["a%00b", "x" * 129, "audit%0A"])
def test_verify_of_a_path_that_is_no_user_id_is_422(client: TestClient, user_id: str) -> None:
    """A NUL byte in the path was a 500 on PostgreSQL (its text cannot hold one)."""
    body = assert_problem(verify(client, user_id), 422)
    assert [error["loc"] for error in body["errors"]] == [["path", "user_id"]]
