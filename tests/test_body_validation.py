"""Input rules of api.md for whole bodies: UTF-8 JSON objects, media types, the size limit."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import Api
from tests.validation_helpers import LIMIT, assert_problem, padded, post_raw

JSON = {"Content-Type": "application/json"}


# --- text the database cannot store ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"title": "a\\ud800b"}',
        b'{"title": "a\\udc00"}',
        b'{"title": "t", "description": "\\ud83d"}',
        b'{"title": "t", "tags": ["\\udfff"]}',
    ],
    ids=["title-high", "title-low", "description", "tag"],
)
def test_an_unpaired_surrogate_escape_is_422(api: Api, content: bytes) -> None:
    """A lone UTF-16 surrogate sent as a JSON escape is 422, never stored or replaced."""
    assert_problem(post_raw(api, content), 422)


def test_a_paired_surrogate_escape_is_the_character_it_encodes(api: Api) -> None:
    """A surrogate pair escape decodes to its one character."""
    response = post_raw(api, b'{"title": "\\ud83d\\ude00 party"}')
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "😀 party"


# --- bodies that are not JSON objects -------------------------------------------------------


NOT_A_JSON_OBJECT = {
    "truncated": b'{"title": "t"',
    "single-quotes": b"{'title': 't'}",
    "invalid-utf8": b'{"title": "\xff\xfe"}',
    "latin-1": b'{"title": "caf\xe9"}',
    "list": b'["title"]',
    "string": b'"title"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
    "two-documents": b'{"title": "a"} {"title": "b"}',
}


@pytest.mark.parametrize("content", list(NOT_A_JSON_OBJECT.values()), ids=list(NOT_A_JSON_OBJECT))
def test_a_body_that_is_not_a_utf8_json_object_is_422(api: Api, content: bytes) -> None:
    """Invalid JSON, invalid UTF-8, or JSON that is not an object is 422, never 400."""
    assert_problem(post_raw(api, content), 422)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"],
    ids=["charset", "upper-case", "charset-no-space"],
)
def test_json_content_types_with_parameters_are_accepted(api: Api, content_type: str) -> None:
    """The media type is compared case-insensitively and parameters do not matter."""
    assert post_raw(api, b'{"title": "t"}', content_type).status_code == 201


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
    ids=["missing", "text-plain", "form", "multipart"],
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", ""), ("PUT", "/{id}"), ("PATCH", "/{id}"), ("PATCH", "/{id}/complete")],
    ids=["post", "put", "patch", "complete"],
)
def test_a_body_that_is_not_declared_json_is_415(
    api: Api, method: str, suffix: str, content_type: str | None
) -> None:
    """A body with no Content-Type or a non-JSON one is 415."""
    task_id = api.create()["id"]
    headers = {} if content_type is None else {"Content-Type": content_type}
    content = b'{"completed": true}' if "complete" in suffix else b'{"title": "t"}'
    response = api.request(method, suffix.format(id=task_id), content=content, headers=headers)
    assert_problem(response, 415)
    assert api.get(task_id).json()["version"] == 1


# --- size -----------------------------------------------------------------------------------


def test_a_body_of_exactly_64_kib_is_accepted(api: Api) -> None:
    """64 KiB is the limit, not over it."""
    assert post_raw(api, padded(LIMIT)).status_code == 201


def test_a_body_over_64_kib_is_413(api: Api) -> None:
    """One byte over 64 KiB is 413."""
    assert_problem(post_raw(api, padded(LIMIT + 1)), 413)


def test_a_chunked_body_over_64_kib_is_413(api: Api) -> None:
    """Without a Content-Length, a body that grows over 64 KiB while read is 413."""

    def chunks() -> Iterator[bytes]:
        data = padded(LIMIT + 1)
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    response = api.request("POST", content=chunks(), headers=JSON)
    assert_problem(response, 413)


def test_a_body_with_thousands_of_errors_gets_a_bounded_answer(api: Api) -> None:
    """A 64 KiB body of unknown fields: each is an error; the answer lists the first 20 and
    says how many there were (one such body was answered with 4.3 MB)."""
    fields = {f"f{n}": 0 for n in range(6000)}
    content = orjson.dumps({"title": "t", **fields})
    assert len(content) < LIMIT
    response = post_raw(api, content)
    body = assert_problem(response, 422)
    assert len(body["errors"]) == 20
    assert "6000 errors" in body["detail"]
    assert len(response.content) < 8 * 1024


def test_an_error_on_a_huge_key_does_not_echo_it_whole(api: Api) -> None:
    key = "k" * 60_000
    response = post_raw(api, orjson.dumps({"title": "t", key: 1}))
    body = assert_problem(response, 422)
    assert len(response.content) < 8 * 1024
    assert body["errors"][0]["loc"][1].startswith("kkkk")
