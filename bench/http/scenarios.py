"""The scenarios: which request a virtual user sends the n-th time round its loop.

Shared by the orchestrator (which picks the users and tasks) and the load client process (which
builds the requests), so that a plan crosses the process boundary as plain data: a scenario name,
users, tokens and task ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class UserPool(Enum):
    """Whose data a scenario works on."""

    ANONYMOUS = "anonymous"  # no user, no token: the reference endpoint
    WRITERS = "writers"  # bench-u{i}: one user per virtual user, tasks created during the run
    LISTERS = "listers"  # bench-list-u{i}: seeded with exactly 1 000 tasks, never written to
    HISTORY = "history"  # bench-history: one task seeded with 10 000 events
    FRESH = "fresh"  # bench-fresh: one task created just before the cell
    BARE = "bare"  # the bare reference app: bench-u{i}'s task ids, no token


class Kind(Enum):
    """What serves a scenario's requests, and so how the orchestrator runs its cells."""

    SERVICE = "service"  # tasktrail, closed loop
    BARE_ASYNC = "bare_async"  # bare_app.py's async app, closed loop
    BARE_SYNC = "bare_sync"  # bare_app.py's sync app, closed loop
    PGBENCH = "pgbench"  # pgbench running the create transaction: no HTTP at all
    OPEN_LOOP = "open_loop"  # tasktrail, open loop: 100 users, then one user alone


@dataclass(frozen=True, slots=True)
class VirtualUser:
    index: int
    user_id: str
    token: str
    task_ids: tuple[str, ...] = ()  # the user's own tasks, for the scenarios that address one


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    authenticated: bool = True


# (virtual user, request number within the cell, cell tag) -> the request to send.
RequestFor = Callable[[VirtualUser, int, str], Request]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    label: str  # as printed in the table
    pool: UserPool
    request_for: RequestFor
    kind: Kind = Kind.SERVICE
    # Fixed virtual users, whatever --concurrency says: one task has one lock, so its writes
    # are measured at one user.
    levels: tuple[int, ...] | None = None


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _task_of(user: VirtualUser, n: int) -> str:
    # Walk round the user's tasks so that each task collects only a few events: an update folds
    # the task's whole history, and hammering one task would measure a history of thousands.
    return user.task_ids[(user.index + n) % len(user.task_ids)]


def _healthz(_user: VirtualUser, _n: int, _tag: str) -> Request:
    return Request("GET", "/healthz", authenticated=False)


def _create(user: VirtualUser, n: int, tag: str) -> Request:
    return Request("POST", f"/api/{user.user_id}/tasks", _json({"title": f"bench {tag} #{n}"}))


def _get_one(user: VirtualUser, n: int, _tag: str) -> Request:
    return Request("GET", f"/api/{user.user_id}/tasks/{_task_of(user, n)}")


def _list(limit: int) -> RequestFor:
    def request_for(user: VirtualUser, _n: int, _tag: str) -> Request:
        return Request("GET", f"/api/{user.user_id}/tasks?limit={limit}")

    return request_for


def _update(user: VirtualUser, n: int, tag: str) -> Request:
    # The tag and n make every title new (also across cells), so every PATCH appends an event:
    # a patch that changes nothing would take the cheaper no-op path.
    body = _json({"title": f"renamed {tag} #{n}"})
    return Request("PATCH", f"/api/{user.user_id}/tasks/{_task_of(user, n)}", body)


def _complete(user: VirtualUser, n: int, _tag: str) -> Request:
    # No body: toggle, so every request appends TaskCompleted or TaskReopened.
    return Request("PATCH", f"/api/{user.user_id}/tasks/{_task_of(user, n)}/complete")


def _bare_read(user: VirtualUser, n: int, _tag: str) -> Request:
    # The same task ids as get one, without the user in the path: the bare app checks nothing.
    return Request("GET", f"/tasks/{_task_of(user, n)}", authenticated=False)


def _no_request(_user: VirtualUser, _n: int, _tag: str) -> Request:
    raise AssertionError("pgbench sends its own transactions; no HTTP request is built")


_list_50 = _list(50)
# The open loop's mix, in 15 slots: 20% writes (create, title PATCH, toggle), 80% reads (get
# one, list 50). Each user starts at its own slot, so at any moment every kind is in flight.
_OPEN_MIX: tuple[RequestFor, ...] = (
    *(_get_one, _list_50) * 2,
    _create,
    *(_get_one, _list_50) * 2,
    _update,
    *(_get_one, _list_50) * 2,
    _complete,
)
OPEN_LOOP_WRITE_SHARE = 3 / len(_OPEN_MIX)


def _open_mix(user: VirtualUser, n: int, tag: str) -> Request:
    return _OPEN_MIX[(user.index + n) % len(_OPEN_MIX)](user, n, tag)


# The yardstick of every ratio: always measured, whatever --scenarios says.
BARE_READ = "bare_read"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("healthz", "reference GET /healthz", UserPool.ANONYMOUS, _healthz),
    Scenario(BARE_READ, "bare read (async)", UserPool.BARE, _bare_read, Kind.BARE_ASYNC),
    Scenario("bare_read_sync", "bare read, sync", UserPool.BARE, _bare_read, Kind.BARE_SYNC),
    Scenario("pgbench_create", "pgbench create", UserPool.ANONYMOUS, _no_request, Kind.PGBENCH),
    Scenario("create", "create", UserPool.WRITERS, _create),
    Scenario("get_one", "get one", UserPool.WRITERS, _get_one),
    Scenario("list_50", "list 50 of 1000", UserPool.LISTERS, _list_50),
    Scenario("list_1000", "list 1000 of 1000", UserPool.LISTERS, _list(1000)),
    Scenario("update", "update (PATCH title)", UserPool.WRITERS, _update),
    Scenario("complete", "complete (toggle)", UserPool.WRITERS, _complete),
    Scenario("update_history", "update, 10k-event task", UserPool.HISTORY, _update, levels=(1,)),
    Scenario("update_fresh", "update, fresh task", UserPool.FRESH, _update, levels=(1,)),
    Scenario("open_loop", "open loop, 1 req/s each", UserPool.WRITERS, _open_mix, Kind.OPEN_LOOP),
)
# Scenarios whose rows measure something other than tasktrail's API, for comparison.
REFERENCES = frozenset({"client_ceiling", "healthz", BARE_READ, "bare_read_sync", "pgbench_create"})
# The reference request, sent to a canned-answer stub server instead of tasktrail: what the load
# client alone can drive on this machine (see stub_server.py).
CLIENT_CEILING = Scenario("client_ceiling", "client ceiling (stub)", UserPool.ANONYMOUS, _healthz)
SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in (*SCENARIOS, CLIENT_CEILING)}
