"""Tamper evidence: the verify route and `tasktrail audit verify` on a log an attacker rewrote.

The attacker has the database: each tampering runs with the append-only triggers off (on
PostgreSQL `session_replication_role = replica` for one transaction, on SQLite the triggers are
dropped and recreated as migration 0001 makes them, in the same transaction). Only the test's own
user is touched, and every user built here is erased afterwards, so the shared database keeps
nothing broken that a full `audit verify` could trip on. Who may call the verify route, and what
it refuses, is in test_tamper_verify_requests.py.
"""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, select, update

from tasktrail.domain.chain import GENESIS_HASH
from tasktrail.schema import events, tasks, user_streams
from tests.conftest import Api, new_user_id
from tests.processes import run_cli
from tests.tamper_helpers import (
    LOG_LENGTH,
    append_unrecorded,
    attack,
    build_log,
    cut_tail,
    delete_seq_2,
    edit_actor,
    edit_data,
    erase_user,
    forge_stream_head,
    hashes,
    intact,
    report,
    rewrite_chain,
    stream_head,
    swap_seq_2_and_3,
)


@pytest.fixture
def log(api: Api, engine: Engine) -> Iterator[Api]:
    """The test's user with a five-event log, erased afterwards whatever was done to it."""
    try:
        build_log(api)
        assert sorted(hashes(engine, api.user_id)) == list(range(1, LOG_LENGTH + 1))
        yield api
    finally:
        erase_user(engine, api.user_id)


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
