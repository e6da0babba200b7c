"""Sort and keyset paging of GET /api/{user_id}/tasks: orders, ties, filtered pages and cursors."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url

from tasktrail.api.app import create_app
from tasktrail.database import create_database_engine, write_transaction
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields, UpdateTask
from tasktrail.storage.sqlite.transaction import handle
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    Api,
    make_settings,
    migrated,
    new_user_id,
    postgres_unreachable,
)
from tests.list_helpers import assert_query_problem, titles, words

_NEXT_LINK = re.compile(r'^<([^>]+)>; rel="next"$')
SORTS = [
    f"{sign}{name}"
    for name in ("created", "updated", "title", "due", "priority")
    for sign in ("", "-")
]


def next_url(response: Any) -> str | None:
    """The target of the `Link: <...>; rel="next"` header, or None when there is none."""
    link = response.headers.get("link")
    match = None if link is None else _NEXT_LINK.match(link)
    assert link is None or match is not None, f"malformed Link header: {link!r}"
    return None if match is None else str(match.group(1))


def follow(api: Api, url: str) -> Any:
    """GET a Link target: the path and query of the absolute URL, with the user's token."""
    parts = urlsplit(url)
    assert parts.path == api.url(), f"the Link points elsewhere: {url}"
    return api.client.get(f"{parts.path}?{parts.query}", headers=api.headers)


def cursor_of(response: Any) -> str:
    url = next_url(response)
    assert url is not None, "expected a next Link"
    return parse_qs(urlsplit(url).query)["cursor"][0]


def walk(api: Api, **params: Any) -> tuple[list[str], list[Any]]:
    """Every page from the first to the one without a Link; the titles seen and the responses."""
    response = api.request("GET", params=params)
    responses = [response]
    while (url := next_url(response)) is not None:
        assert response.status_code == 200, response.text
        response = follow(api, url)
        responses.append(response)
    return [title for page in responses for title in titles(page)], responses


# --- A seeded data set with tied keys, made through the real handler with a fixed clock -------

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DUE = {n: f"2030-0{n}-01T08:00:00.000000Z" for n in (1, 2, 3, 4)}

# title, created minute, due (None or DUE key), priority, tags, rank of the task's id (0 lowest)
SEED: list[tuple[str, int, int | None, int, tuple[str, ...], int]] = [
    ("apple", 0, 1, 2, ("home",), 7),
    ("Apple", 0, None, 2, ("Work",), 2),
    ("banana", 1, 2, 0, ("home", "work"), 9),
    ("Cherry", 1, 1, 3, ("HOME",), 0),
    ("cherry", 1, None, 0, (), 5),
    ("straße", 2, 3, 1, ("Straße",), 3),
    ("STRASSE", 3, 2, 1, ("home",), 8),
    ("b", 3, None, 3, ("work",), 1),
    ("C", 4, 4, 2, ("home",), 6),
    ("date", 5, 3, 0, (), 4),
]
# Updated later, at these minutes (banana and Cherry at the same instant).
UPDATES = [("banana", 6), ("Cherry", 6), ("apple", 7)]

# Worked out by hand from SEED: key, then id in the same direction; no due_at last both ways
# (Apple, cherry and b have none).
EXPECTED = {
    "created": words("Apple apple Cherry cherry banana straße b STRASSE C date"),
    "updated": words("Apple cherry straße b STRASSE C date Cherry banana apple"),
    "title": words("Apple apple b banana C Cherry cherry date straße STRASSE"),
    "due": words("Cherry apple STRASSE banana straße date C b Apple cherry"),
    "-due": words("C date straße banana STRASSE apple Cherry cherry Apple b"),
    "priority": words("date cherry banana straße STRASSE Apple C apple Cherry b"),
}
for _name in ("created", "updated", "title", "priority"):
    EXPECTED[f"-{_name}"] = list(reversed(EXPECTED[_name]))


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def seed(engine: Engine, user_id: str) -> dict[str, str]:
    """Create SEED for the user (ids in a fixed relative order) and apply UPDATES; title -> id."""
    ranked = sorted((uuid.uuid4() for _ in SEED), key=lambda value: value.int)
    context = CommandContext(user_id=user_id, actor=user_id, request_id=None)
    task_ids: dict[str, str] = {}
    for title, minute, due, priority, tags, rank in SEED:
        moment = BASE + timedelta(minutes=minute)
        fields = TaskFields(
            title=title,
            due_at=None if due is None else datetime.fromisoformat(DUE[due]),
            priority=priority,
            tags=tags,
        )
        command = CreateTask(context=context, task_id=str(ranked[rank]), fields=fields)
        with write_transaction(engine) as conn:
            handle(conn, command, clock=fixed_clock(moment))
        task_ids[title] = command.task_id
    for title, minute in UPDATES:
        moment = BASE + timedelta(minutes=minute)
        update = UpdateTask(
            context=context, task_id=task_ids[title], changes={"description": "edited"}
        )
        with write_transaction(engine) as conn:
            handle(conn, update, clock=fixed_clock(moment))
    return task_ids


@pytest.fixture
def seeded(api: Api, engine: Engine) -> dict[str, str]:
    """SEED for the test's own user, for tests that change it."""
    return seed(engine, api.user_id)


@pytest.fixture(scope="module")
def shared(client: TestClient, engine: Engine) -> Api:
    """SEED for a user of this module, per engine, for tests that only read."""
    api = Api(client, new_user_id())
    seed(engine, api.user_id)
    return api


@pytest.mark.parametrize("sort", SORTS, ids=SORTS)
def test_every_sort_orders_by_its_key_then_by_id_in_the_same_direction(
    shared: Api, sort: str
) -> None:
    """Each sort form gives the order of its key, ties broken by id in the sort's direction."""
    response = shared.request("GET", params={"sort": sort, "limit": 1000})
    assert titles(response) == EXPECTED[sort]
    assert response.headers["x-total-count"] == "10"
    assert "link" not in response.headers


def test_the_default_sort_is_newest_created_first(shared: Api) -> None:
    """Without sort the list is sorted as sort=-created."""
    assert titles(shared.request("GET")) == EXPECTED["-created"]


@pytest.mark.parametrize("sort", SORTS, ids=SORTS)
def test_keyset_paging_walks_exactly_the_full_sorted_list(shared: Api, sort: str) -> None:
    """Following Link with limit=3 or 1 yields the limit=1000 list in its order, once each."""
    full = titles(shared.request("GET", params={"sort": sort, "limit": 1000}))
    assert full == EXPECTED[sort]
    seen, responses = walk(shared, sort=sort, limit=3)
    assert seen == full
    assert [len(page.json()) for page in responses] == [3, 3, 3, 1]
    assert [page.headers["x-total-count"] for page in responses] == ["10"] * 4
    seen, responses = walk(shared, sort=sort, limit=1)  # every boundary inside or at a tie
    assert seen == full
    assert len(responses) == 10


@pytest.mark.parametrize(
    ("sort", "groups"),
    [
        pytest.param("title", [["straße", "STRASSE"]], id="sharp-s-folds-to-ss"),
        pytest.param("-title", [["straße", "STRASSE"]], id="descending-tie"),
        pytest.param("title", [["Apple", "apple", "APPLE"]], id="case-only"),
        pytest.param("title", [["a"], ["b", "B"], ["C"]], id="b-before-C"),
        pytest.param("-title", [["C"], ["b", "B"], ["a"]], id="C-before-b"),
        pytest.param(
            "title", [["a b"], ["a-c"], ["ab"], ["B"], ["zebra"], ["Éclair"]], id="code-points"
        ),
    ],
)
def test_title_sort_compares_case_folded_titles_then_ids(
    api: Api, sort: str, groups: list[list[str]]
) -> None:
    """sort=title compares str.casefold() of the title; titles that fold equal go by id."""
    created = {title: api.create(title=title)["id"] for group in groups for title in group}
    descending = sort.startswith("-")
    expected = [
        title
        for group in groups
        for title in sorted(group, key=lambda t: uuid.UUID(created[t]), reverse=descending)
    ]
    assert titles(api.request("GET", params={"sort": sort})) == expected


def test_title_order_is_code_point_order_also_on_a_postgres_with_a_language_collation() -> None:
    """sort=title is the same on both engines, even where PostgreSQL's default collation is en-US."""
    admin = make_url(POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://", 1))
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"tasktrail_test_icu_{uuid.uuid4().hex[:10]}"
    try:
        admin_conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        postgres_unreachable(str(error).strip().splitlines()[0])
        raise
    with admin_conn:
        try:
            admin_conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error as error:
            pytest.skip(f"this PostgreSQL cannot make an ICU en-US database: {error}")
    settings = make_settings(admin.set(database=name).render_as_string(hide_password=False))
    engine = create_database_engine(settings)
    try:
        migrated(settings.database_url)
        with TestClient(create_app(settings, engine=engine)) as client:
            api = Api(client, new_user_id())
            for title in ("zebra", "Éclair", "ab", "a b"):
                api.create(title=title)
            got = titles(api.request("GET", params={"sort": "title"}))
        assert got == ["a b", "ab", "zebra", "Éclair"]
    finally:
        engine.dispose()
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "sort",
    ["name", "--due", "", "-", "+due", "Created", "due,title", " due", "due\n"],
    ids=repr,
)
def test_an_invalid_sort_is_422(api: Api, sort: str) -> None:
    """sort accepts exactly created, updated, title, due, priority, optionally with a leading -."""
    assert_query_problem(api.request("GET", params={"sort": sort}), "sort")


# --- combinations ---------------------------------------------------------------------------


COMBINATIONS = [
    ({"q": "a", "tag": "home", "sort": "-priority"}, "apple STRASSE banana"),
    ({"due_after": DUE[2], "sort": "title"}, "banana C date straße STRASSE"),
    ({"q": "E", "due_before": DUE[3], "sort": "due"}, "Cherry apple STRASSE banana"),
    ({"tag": ["HOME"], "sort": "-updated"}, "apple banana Cherry C STRASSE"),
    ({"q": "ss", "tag": "strasse", "sort": "created"}, "straße"),
    ({"status": "pending", "q": "an", "sort": "-due"}, "banana"),
    ({"status": "completed", "sort": "title"}, ""),
]


@pytest.mark.parametrize(
    ("params", "expected"),
    COMBINATIONS,
    ids=["q-tag-prio", "after-title", "q-before-due", "tag-updated", "q-tag", "status-q", "none"],
)
def test_filters_combine_with_sorts_and_the_total_counts_every_match_on_every_page(
    shared: Api, params: dict[str, Any], expected: str
) -> None:
    """Filters are ANDed, the sort applies to the matches, and X-Total-Count is their number."""
    assert titles(shared.request("GET", params={**params, "limit": 1000})) == words(expected)
    seen, responses = walk(shared, **params, limit=2)
    assert seen == words(expected)
    assert {page.headers["x-total-count"] for page in responses} == {str(len(words(expected)))}


# --- cursors ----------------------------------------------------------------------------------

CURSOR_BASE: dict[str, Any] = {"sort": "title", "q": "a", "tag": "home", "status": "all"}
CURSOR_BASE["due_before"] = "2100-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"sort": "-title"}, id="other-sort"),
        pytest.param({"sort": None}, id="sort-dropped"),
        pytest.param({"q": "an"}, id="other-q"),
        pytest.param({"q": None}, id="q-dropped"),
        pytest.param({"tag": "work"}, id="other-tag"),
        pytest.param({"tag": ["home", "work"]}, id="tag-added"),
        pytest.param({"tag": None}, id="tag-dropped"),
        pytest.param({"status": "pending"}, id="other-status"),
        pytest.param({"status": None}, id="status-dropped"),
        pytest.param({"due_before": "2099-01-01T00:00:00Z"}, id="other-due-before"),
        pytest.param({"due_before": None}, id="due-before-dropped"),
        pytest.param({"due_after": "2000-01-01T00:00:00Z"}, id="due-after-added"),
    ],
)
def test_a_cursor_with_any_other_parameter_is_422(shared: Api, change: dict[str, Any]) -> None:
    """A cursor is bound to its parameters: changing, adding or dropping one is refused."""
    first = shared.request("GET", params={**CURSOR_BASE, "limit": 1})
    assert titles(first) == ["apple"]
    params = {name: value for name, value in {**CURSOR_BASE, **change}.items() if value is not None}
    response = shared.request("GET", params={**params, "limit": 1, "cursor": cursor_of(first)})
    assert_query_problem(response, "cursor")


def test_only_limit_may_change_between_pages(shared: Api) -> None:
    """The same parameters with another limit continue after the cursor."""
    first = shared.request("GET", params={**CURSOR_BASE, "limit": 1})
    second = shared.request("GET", params={**CURSOR_BASE, "limit": 5, "cursor": cursor_of(first)})
    assert titles(first) + titles(second) == ["apple", "banana", "STRASSE"]
    assert second.headers["x-total-count"] == "3"
    assert "link" not in second.headers


@pytest.mark.parametrize("sort", SORTS, ids=SORTS)
def test_a_task_deleted_between_pages_is_skipped_and_nothing_else_is(
    api: Api, seeded: dict[str, str], sort: str
) -> None:
    """Deleting the cursor's own task and a later one mid-walk loses only the later one."""
    full = EXPECTED[sort]
    first = api.request("GET", params={"sort": sort, "limit": 3})
    assert titles(first) == full[:3]
    for title in (full[2], full[5]):
        assert api.request("DELETE", f"/{seeded[title]}").status_code == 204
    rest, responses = walk(api, sort=sort, limit=3, cursor=cursor_of(first))
    assert rest == full[3:5] + full[6:]
    assert {page.headers["x-total-count"] for page in responses} == {"8"}


@pytest.mark.parametrize(
    ("sort", "fields"),
    [
        pytest.param("title", {"title": "!first"}, id="title"),
        pytest.param("-title", {"title": "zzz"}, id="minus-title"),
        pytest.param("-created", {"title": "newest"}, id="minus-created"),
        pytest.param("-updated", {"title": "newest"}, id="minus-updated"),
        pytest.param("due", {"title": "soonest", "due_at": "2000-01-01T00:00:00Z"}, id="due"),
        pytest.param("-due", {"title": "latest", "due_at": "2999-01-01T00:00:00Z"}, id="minus-due"),
    ],
)
def test_a_task_created_between_pages_before_the_cursor_is_not_returned(
    api: Api, seeded: dict[str, str], sort: str, fields: dict[str, Any]
) -> None:
    """A newcomer that sorts before the cursor does not appear later, and nothing repeats."""
    first = api.request("GET", params={"sort": sort, "limit": 3})
    newcomer = api.create(**fields)
    rest, responses = walk(api, sort=sort, limit=3, cursor=cursor_of(first))
    assert titles(first) + rest == EXPECTED[sort]
    assert {page.headers["x-total-count"] for page in responses} == {"11"}
    assert api.request("GET", params={"sort": sort, "limit": 1}).json()[0]["id"] == newcomer["id"]


@pytest.mark.parametrize(
    ("sort", "fields"),
    [
        pytest.param("created", {"title": "newest"}, id="created"),
        pytest.param("title", {"title": "zzz"}, id="title"),
        pytest.param("-title", {"title": "!"}, id="minus-title"),
    ],
)
def test_a_task_created_between_pages_after_the_cursor_appears_later(
    api: Api, seeded: dict[str, str], sort: str, fields: dict[str, Any]
) -> None:
    """A newcomer that sorts after the cursor shows up in its place on a later page."""
    first = api.request("GET", params={"sort": sort, "limit": 3})
    api.create(**fields)
    rest, _ = walk(api, sort=sort, limit=3, cursor=cursor_of(first))
    assert titles(first) + rest == [*EXPECTED[sort], fields["title"]]
