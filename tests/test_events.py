"""A task's history: every field of "The event", the types and data, request ids and the hash chain."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from itertools import pairwise
from typing import Any

import pytest

from tests.conftest import Api

PROBLEM_JSON = "application/problem+json"
GENESIS = "0" * 64
EVENT_FIELDS = {
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
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(value: Any) -> bytes:
    """The canonical encoding of api.md "Exact rules", written out independently of the service."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def expected_hash(event: dict[str, Any]) -> str:
    """SHA-256 of every served field except position, hash and data."""
    return sha256_hex({k: v for k, v in event.items() if k not in ("position", "hash", "data")})


def request_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def send(api: Api, method: str, suffix: str = "", **kwargs: Any) -> tuple[Any, str]:
    """A request with our own X-Request-ID; returns the response and that id."""
    rid = request_id()
    response = api.request(method, suffix, headers={"X-Request-ID": rid}, **kwargs)
    assert response.headers["x-request-id"] == rid
    return response, rid


def test_a_history_serves_every_field_of_the_event(api: Api) -> None:
    """Each event carries exactly the fields of "The event", well formed."""
    task = api.create(title="fields")
    [event] = api.history(task["id"])
    assert set(event) == EVENT_FIELDS
    assert isinstance(event["position"], int)
    assert event["position"] > 0
    assert event["user_id"] == api.user_id
    assert event["actor"] == api.user_id
    assert event["seq"] == 1
    assert event["task_id"] == task["id"]
    assert event["version"] == 1
    assert event["type"] == "TaskCreated"
    assert event["schema_version"] == 1
    assert isinstance(event["data"], dict)
    assert HEX64.match(event["data_hash"])
    assert HEX64.match(event["hash"])
    assert event["prev_hash"] == GENESIS
    assert TIMESTAMP.match(event["occurred_at"])
    assert event["occurred_at"] == task["created_at"]
    assert isinstance(event["request_id"], str)


def test_task_created_holds_the_editable_fields_and_completed(api: Api) -> None:
    """TaskCreated's data is the editable fields as served, plus completed, and nothing else."""
    task = api.create(
        title="  Buy milk  ",
        description="two litres",
        due_at="2031-05-06T10:00:00+02:00",
        priority=2,
        tags=["home", "Home", "errand"],
        completed=True,
    )
    [event] = api.history(task["id"])
    assert event["type"] == "TaskCreated"
    assert event["data"] == {
        "title": "Buy milk",
        "description": "two litres",
        "due_at": "2031-05-06T08:00:00.000000Z",
        "priority": 2,
        "tags": ["home", "errand"],
        "completed": True,
    }


def test_task_created_with_defaults_records_them(api: Api) -> None:
    """A create with only a title records the defaults of every other field."""
    task = api.create(title="bare")
    [event] = api.history(task["id"])
    assert event["data"] == {
        "title": "bare",
        "description": None,
        "due_at": None,
        "priority": 0,
        "tags": [],
        "completed": False,
    }


def test_task_updated_records_only_the_fields_that_changed(api: Api) -> None:
    """A PATCH touching three fields, one of them unchanged, records the two that changed."""
    task = api.create(title="old", description="same", priority=1)
    response, _ = send(
        api,
        "PATCH",
        f"/{task['id']}",
        json={"title": "new", "description": "same", "tags": ["a"]},
    )
    assert response.status_code == 200, response.text
    events = api.history(task["id"])
    assert [event["type"] for event in events] == ["TaskCreated", "TaskUpdated"]
    assert events[1]["data"] == {"changes": {"title": "new", "tags": ["a"]}}


def test_a_put_records_the_reset_fields_as_changes(api: Api) -> None:
    """A PUT that leaves out priority and tags records them reset to their defaults."""
    task = api.create(title="t", priority=3, tags=["x"], due_at="2031-01-01T00:00:00Z")
    response, _ = send(api, "PUT", f"/{task['id']}", json={"title": "t"})
    assert response.status_code == 200, response.text
    assert api.history(task["id"])[-1]["data"] == {
        "changes": {"priority": 0, "tags": [], "due_at": None}
    }


def test_a_patch_with_fields_and_completion_appends_updated_then_completed(api: Api) -> None:
    """Changing fields and completed in one PATCH appends TaskUpdated, then TaskCompleted."""
    task = api.create(title="both")
    response, rid = send(api, "PATCH", f"/{task['id']}", json={"title": "b", "completed": True})
    assert response.status_code == 200, response.text
    events = api.history(task["id"])
    assert [(e["type"], e["data"], e["version"]) for e in events[1:]] == [
        ("TaskUpdated", {"changes": {"title": "b"}}, 2),
        ("TaskCompleted", {}, 3),
    ]
    assert [e["request_id"] for e in events[1:]] == [rid, rid]
    assert events[1]["occurred_at"] == events[2]["occurred_at"]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "status", "event_type"),
    [
        ("PATCH", "/complete", None, 200, "TaskCompleted"),
        ("PATCH", "/complete", {"completed": True}, 200, "TaskCompleted"),
        ("DELETE", "", None, 204, "TaskDeleted"),
    ],
    ids=["toggle-completes", "set-completed", "delete"],
)
def test_a_lifecycle_write_appends_its_event_with_empty_data(
    api: Api,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
    status: int,
    event_type: str,
) -> None:
    """Completing and deleting append their event type with data {}."""
    task = api.create(title="life")
    response, rid = send(api, method, f"/{task['id']}{suffix}", json=body)
    assert response.status_code == status, response.text
    events = api.history(task["id"])
    assert len(events) == 2
    assert (events[1]["type"], events[1]["data"], events[1]["version"]) == (event_type, {}, 2)
    assert events[1]["request_id"] == rid


def test_a_whole_life_is_served_oldest_first_with_every_type(api: Api) -> None:
    """Create, update, complete, reopen, delete and restore appear in order, versions 1 to 6."""
    task_id = api.create(title="life")["id"]
    writes = [
        ("PATCH", "", {"title": "life 2"}, 200),
        ("PATCH", "/complete", None, 200),
        ("PATCH", "/complete", {"completed": False}, 200),
        ("DELETE", "", None, 204),
        ("POST", "/restore", None, 200),
    ]
    rids = []
    for method, suffix, body, status in writes:
        response, rid = send(api, method, f"/{task_id}{suffix}", json=body)
        assert response.status_code == status, response.text
        rids.append(rid)
    events = api.history(task_id)
    assert [(e["type"], e["version"], e["seq"]) for e in events] == [
        ("TaskCreated", 1, 1),
        ("TaskUpdated", 2, 2),
        ("TaskCompleted", 3, 3),
        ("TaskReopened", 4, 4),
        ("TaskDeleted", 5, 5),
        ("TaskRestored", 6, 6),
    ]
    assert [e["data"] for e in events[2:]] == [{}, {}, {}, {}]
    assert [e["request_id"] for e in events[1:]] == rids
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


def test_the_history_stays_readable_after_deletion(api: Api) -> None:
    """A deleted task is 404 on GET but its history is still served, TaskDeleted last."""
    task_id = api.create(title="gone")["id"]
    assert api.request("DELETE", f"/{task_id}").status_code == 204
    assert api.get(task_id).status_code == 404
    assert [event["type"] for event in api.history(task_id)] == ["TaskCreated", "TaskDeleted"]


def test_writes_that_change_nothing_append_no_event(api: Api) -> None:
    """An empty-effect PATCH and a completion set to what holds leave the history as it was."""
    task = api.create(title="still", priority=1)
    assert api.request("PATCH", f"/{task['id']}", json={"priority": 1}).status_code == 200
    response = api.request("PATCH", f"/{task['id']}/complete", json={"completed": False})
    assert response.status_code == 200
    assert len(api.history(task["id"])) == 1


def test_each_event_records_the_request_id_of_the_response_that_wrote_it(api: Api) -> None:
    """request_id on an event equals the X-Request-ID of the write that appended it."""
    created, create_rid = send(api, "POST", json={"title": "traced"})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    updated, update_rid = send(api, "PATCH", f"/{task_id}", json={"title": "traced 2"})
    assert updated.status_code == 200, updated.text
    assert [event["request_id"] for event in api.history(task_id)] == [create_rid, update_rid]


def test_an_insane_request_id_is_replaced_and_the_event_records_the_new_one(api: Api) -> None:
    """A client X-Request-ID with forbidden characters is replaced; the event holds the one served."""
    response = api.request("POST", json={"title": "t"}, headers={"X-Request-ID": "bad id/with?"})
    assert response.status_code == 201, response.text
    served = response.headers["x-request-id"]
    assert served != "bad id/with?"
    [event] = api.history(response.json()["id"])
    assert event["request_id"] == served


@pytest.mark.parametrize(
    "title",
    ["plain ascii", "Café crème, naïve — 日本語 ☕ 🚀", 'quotes " and \\ backslash'],
    ids=["ascii", "non-ascii", "escapes"],
)
def test_data_hash_and_hash_recompute_from_the_served_json(api: Api, title: str) -> None:
    """data_hash and hash are SHA-256 of the canonical JSON of the served event, as api.md says."""
    task = api.create(title=title, description=f"{title}!", tags=["été", "x"])
    assert api.request("PATCH", f"/{task['id']}", json={"title": f"{title} 2"}).status_code == 200
    assert api.request("PATCH", f"/{task['id']}/complete").status_code == 200
    events = api.history(task["id"])
    assert events[0]["data"]["title"] == title
    for event in events:
        assert event["data_hash"] == sha256_hex(event["data"])
        assert event["hash"] == expected_hash(event)


def test_non_ascii_is_hashed_as_raw_utf8_not_as_escapes(api: Api) -> None:
    """The canonical encoding writes non-ASCII as UTF-8: the \\u-escaped encoding does not match."""
    task = api.create(title="Grüße, 東京")
    [event] = api.history(task["id"])
    escaped = json.dumps(event["data"], sort_keys=True, separators=(",", ":")).encode()
    assert event["data_hash"] == sha256_hex(event["data"])
    assert event["data_hash"] != hashlib.sha256(escaped).hexdigest()


def test_the_empty_data_of_a_lifecycle_event_hashes_as_two_braces(api: Api) -> None:
    """data {} has data_hash sha256(b"{}")."""
    task = api.create(title="t")
    assert api.request("DELETE", f"/{task['id']}").status_code == 204
    assert api.history(task["id"])[-1]["data_hash"] == hashlib.sha256(b"{}").hexdigest()


def test_the_chain_links_every_event_of_the_user_across_tasks_by_seq(api: Api) -> None:
    """The first event has prev_hash of 64 zeros, each next one (by seq, any task) the hash before."""
    first = api.create(title="first")["id"]
    second = api.create(title="second")["id"]
    assert api.request("PATCH", f"/{first}", json={"priority": 3}).status_code == 200
    assert api.request("PATCH", f"/{second}/complete").status_code == 200
    third = api.create(title="third")["id"]
    assert api.request("DELETE", f"/{first}").status_code == 204
    events = sorted(
        (event for task_id in (first, second, third) for event in api.history(task_id)),
        key=lambda event: event["seq"],
    )
    assert [event["seq"] for event in events] == [1, 2, 3, 4, 5, 6]
    assert [event["task_id"] for event in events] == [first, second, first, second, third, first]
    assert events[0]["prev_hash"] == GENESIS
    for earlier, later in pairwise(events):
        assert later["prev_hash"] == earlier["hash"]
        assert later["occurred_at"] >= earlier["occurred_at"]
        assert later["position"] > earlier["position"]
    for event in events:
        assert event["hash"] == expected_hash(event)


def test_the_chains_of_two_users_are_separate(api: Api, make_api: Any) -> None:
    """Each user's log starts at seq 1 from 64 zeros, whatever the other user wrote."""
    other = make_api()
    mine = api.create(title="mine")["id"]
    theirs = other.create(title="theirs")["id"]
    [my_event] = api.history(mine)
    [their_event] = other.history(theirs)
    assert (my_event["seq"], my_event["prev_hash"]) == (1, GENESIS)
    assert (their_event["seq"], their_event["prev_hash"]) == (1, GENESIS)
    assert their_event["user_id"] == other.user_id


@pytest.mark.parametrize(
    "task_id",
    [str(uuid.uuid4()), "not-a-uuid"],
    ids=["never-existed", "not-a-uuid"],
)
def test_the_history_of_an_unknown_task_is_404(api: Api, task_id: str) -> None:
    """A task id that names no task of this user is a 404 problem."""
    response = api.request("GET", f"/{task_id}/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 404
    assert "errors" not in body


def test_the_history_of_another_users_task_is_404_like_a_missing_one(
    api: Api, make_api: Any
) -> None:
    """Another user's task id answers exactly like one that never existed (no oracle)."""
    theirs = make_api().create(title="secret")["id"]
    missing = str(uuid.uuid4())
    foreign = api.request("GET", f"/{theirs}/events")
    absent = api.request("GET", f"/{missing}/events")
    assert foreign.status_code == absent.status_code == 404
    strip = {"detail", "instance", "request_id"}
    assert {k: v for k, v in foreign.json().items() if k not in strip} == {
        k: v for k, v in absent.json().items() if k not in strip
    }
    # The detail may echo the id the caller asked about, and nothing else differs.
    assert foreign.json()["detail"].replace(theirs, "ID") == absent.json()["detail"].replace(
        missing, "ID"
    )
