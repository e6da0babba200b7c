"""The filters of GET /api/{user_id}/tasks: q, tag, due bounds, and unknown parameters refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, new_user_id
from tests.list_helpers import assert_query_problem, titles, words

# --- q --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts(client: TestClient) -> Api:
    api = Api(client, new_user_id())
    for title, description in [
        ("Buy milk", None),
        ("100% juice", None),
        ("1000 grapes", None),
        ("snake_case name", None),
        ("snakeXcase name", None),
        ("Straße fegen", None),
        ("Fix sink", "Call the PLUMBER"),
        ("path/to/file", None),
        ("back\\slash", "MILK-free"),
    ]:
        api.create(title=title, description=description)
    return api


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param("MILK", ["back\\slash", "Buy milk"], id="upper-finds-lower-and-description"),
        pytest.param("%", ["100% juice"], id="percent-literal"),
        pytest.param("0%", ["100% juice"], id="percent-not-wildcard"),
        pytest.param("_", ["snake_case name"], id="underscore-literal"),
        pytest.param("e_c", ["snake_case name"], id="underscore-not-wildcard"),
        pytest.param("SS", ["Straße fegen"], id="ss-finds-sharp-s"),
        pytest.param("strasse", ["Straße fegen"], id="folded-finds-sharp-s"),
        pytest.param("STRAßE", ["Straße fegen"], id="sharp-s-query"),
        pytest.param("plumber", ["Fix sink"], id="description"),
        pytest.param("/", ["path/to/file"], id="slash"),
        pytest.param("\\", ["back\\slash"], id="backslash"),
        pytest.param("nothing like this", [], id="no-match"),
    ],
)
def test_q_is_a_literal_case_folded_substring_of_title_or_description(
    texts: Api, q: str, expected: list[str]
) -> None:
    """q matches the case-folded title or description literally; % and _ are no wildcards."""
    response = texts.request("GET", params={"q": q, "sort": "title"})
    assert titles(response) == expected
    assert response.headers["x-total-count"] == str(len(expected))


def test_q_of_200_characters_is_accepted_and_201_is_422(api: Api) -> None:
    """q is at most 200 characters (code points)."""
    api.create(title="ß" * 199)
    assert titles(api.request("GET", params={"q": "ß" * 200})) == []
    assert titles(api.request("GET", params={"q": "ß" * 199})) == ["ß" * 199]
    assert_query_problem(api.request("GET", params={"q": "ß" * 201}), "q")


def test_status_deleted_combines_with_q(api: Api) -> None:
    """status=deleted&q=... searches the deleted tasks only."""
    one = api.create(title="milk one")
    api.create(title="milk two")
    bread = api.create(title="bread")
    for task in (one, bread):
        assert api.request("DELETE", f"/{task['id']}").status_code == 204
    assert titles(api.request("GET", params={"status": "deleted", "q": "MILK"})) == ["milk one"]
    assert titles(api.request("GET", params={"q": "MILK"})) == ["milk two"]


# --- tag ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged(client: TestClient) -> Api:
    api = Api(client, new_user_id())
    tags = {"a": ["home"], "b": ["Home", "Work"], "c": ["work"], "d": ["Straße"], "e": []}
    for title, task_tags in tags.items():
        api.create(title=title, tags=task_tags)
    return api


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param(["HOME"], ["a", "b"], id="case-insensitive"),
        pytest.param(["home", "work"], ["b"], id="all-must-match"),
        pytest.param(["WORK", "HoMe"], ["b"], id="all-any-case"),
        pytest.param(["strasse"], ["d"], id="casefold"),
        pytest.param(["STRAßE"], ["d"], id="casefold-sharp-s"),
        pytest.param(["garden"], [], id="none"),
        pytest.param(["hom"], [], id="not-substring"),
        pytest.param(["home", "garden"], [], id="one-missing"),
    ],
)
def test_tag_matches_case_insensitively_and_all_must_match(
    tagged: Api, tags: list[str], expected: list[str]
) -> None:
    """Every tag given must be on the task, compared case-folded."""
    response = tagged.request("GET", params={"tag": tags, "sort": "title"})
    assert titles(response) == expected
    assert response.headers["x-total-count"] == str(len(expected))


@pytest.mark.parametrize("tags", [[""], ["home", ""]], ids=["empty", "one-empty"])
def test_an_empty_tag_is_422(api: Api, tags: list[str]) -> None:
    """tag= (empty) is a bad query parameter."""
    assert_query_problem(api.request("GET", params={"tag": tags}), "tag")


# --- due_before / due_after -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dues(client: TestClient) -> Api:
    api = Api(client, new_user_id())
    api.create(title="ten", due_at="2030-01-01T10:00:00Z")
    api.create(title="eleven", due_at="2030-01-01T11:00:00Z")
    api.create(title="eleven+1us", due_at="2030-01-01T11:00:00.000001Z")
    api.create(title="noon", due_at="2030-01-01T14:00:00+02:00")
    api.create(title="undated")
    return api


DAY = "2030-01-01T"
ALL_DATED = "ten eleven eleven+1us noon"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"due_after": DAY + "11:00:00Z"}, "eleven eleven+1us noon", id="after-incl"),
        pytest.param({"due_before": DAY + "11:00:00Z"}, "ten", id="before-excl"),
        pytest.param({"due_after": DAY + "13:00:00+02:00"}, "eleven eleven+1us noon", id="offset"),
        pytest.param({"due_before": DAY + "06:00:00-05:00"}, "ten", id="negative-offset"),
        pytest.param({"due_before": DAY + "11:00:00.000001Z"}, "ten eleven", id="before-micros"),
        pytest.param({"due_after": DAY + "11:00:00.000001Z"}, "eleven+1us noon", id="after-micros"),
        pytest.param(
            {"due_after": "2030-01-01t11:00:00z"}, "eleven eleven+1us noon", id="lower-tz"
        ),
        pytest.param(
            {"due_after": DAY + "10:00:00Z", "due_before": DAY + "12:00:00Z"},
            "ten eleven eleven+1us",
            id="window",
        ),
        pytest.param(
            {"due_after": DAY + "12:00:00Z", "due_before": DAY + "12:00:00Z"}, "", id="none"
        ),
        pytest.param({"due_after": "0001-01-01T00:00:00Z"}, ALL_DATED, id="min-skips-undated"),
        pytest.param({"due_before": "9999-12-31T23:59:59Z"}, ALL_DATED, id="max-skips-undated"),
    ],
)
def test_due_bounds_are_after_inclusive_before_exclusive_and_skip_undated(
    dues: Api, params: dict[str, str], expected: str
) -> None:
    """due_after is >=, due_before is <, offsets count, and a task without due_at matches neither."""
    response = dues.request("GET", params={**params, "sort": "due"})
    assert titles(response) == words(expected)
    assert response.headers["x-total-count"] == str(len(words(expected)))


@pytest.mark.parametrize("name", ["due_before", "due_after"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2030-01-01T10:00:00", id="naive"),
        pytest.param("tomorrow", id="garbage"),
        pytest.param("2030-01-01T10:00:00.1234567Z", id="seven-digits"),
        pytest.param("2030-01-01", id="date-only"),
        pytest.param("2030-02-30T10:00:00Z", id="no-such-day"),
        pytest.param("2030-01-01T10:00:00+24:00", id="bad-offset"),
        pytest.param("", id="empty"),
    ],
)
def test_a_bad_due_bound_is_422(api: Api, name: str, value: str) -> None:
    """due_before and due_after must be RFC 3339 timestamps with an offset, at most 6 digits."""
    assert_query_problem(api.request("GET", params={name: value}), name)


# --- unknown parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["foo", "page", "offset", "tags", "Sort", "order"], ids=str)
def test_an_unknown_parameter_is_422(api: Api, name: str) -> None:
    """A query parameter the route does not know is refused, not ignored."""
    api.create(title="one")
    assert_query_problem(api.request("GET", params={name: "1"}), name)
