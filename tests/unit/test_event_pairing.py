"""An event's type and its data's shape are paired in the type system: mypy refuses a `NewEvent`
made with another type's data (domain/event_data.py), and accepts each right pairing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]
_IMPORTS = (
    "from tasktrail.domain.event_data import NewEvent\n"
    "from tasktrail.domain.events import EventType\n"
)
RIGHT = (
    "NewEvent(EventType.TASK_CREATED, {'title': 't', 'description': None, 'due_at': None,"
    " 'priority': 0, 'tags': [], 'completed': False})\n"
    "NewEvent(EventType.TASK_UPDATED, {'changes': {'title': 'u'}})\n"
    "NewEvent(EventType.TASK_DELETED, {})\n"
)
WRONG = {
    "an update's data on a creation": "NewEvent(EventType.TASK_CREATED, {'changes': {}})\n",
    "a creation's data on an update": (
        "NewEvent(EventType.TASK_UPDATED, {'title': 't', 'description': None, 'due_at': None,"
        " 'priority': 0, 'tags': [], 'completed': False})\n"
    ),
    "data on a completion": "NewEvent(EventType.TASK_COMPLETED, {'changes': {}})\n",
    "a field an update does not know": (
        "NewEvent(EventType.TASK_UPDATED, {'changes': {'colour': 'red'}})\n"
    ),
}


def check(tmp_path: Path, body: str) -> tuple[str, int]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(_IMPORTS + body, encoding="utf-8")
    stdout, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    return stdout, status


def test_each_type_with_its_own_data_type_checks(tmp_path: Path) -> None:
    stdout, status = check(tmp_path, RIGHT)
    assert status == 0, stdout


@pytest.mark.parametrize("body", WRONG.values(), ids=WRONG.keys())
def test_a_type_with_another_types_data_is_refused(tmp_path: Path, body: str) -> None:
    stdout, status = check(tmp_path, body)
    assert status == 1, stdout
    assert "snippet.py:3: error:" in stdout, stdout
