"""The README stays true: its first session runs, and its chain check catches tampering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.processes import served, tasktrail_env

ROOT = Path(__file__).resolve().parent.parent
VERIFY_CHAIN = ROOT / "docs" / "verify_chain.py"


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no sh block under {heading}"
    return match.group(1)


@pytest.fixture(scope="module")
def alice_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run the README's curl session against a served instance; return alice's feed."""
    cwd = tmp_path_factory.mktemp("readme")
    with served(cwd) as (base_url, _, _):
        script = (
            readme_block("A first session")
            .replace("uv run tasktrail", f"{sys.executable} -m tasktrail")
            .replace("http://127.0.0.1:8000", base_url)
            .replace("docs/verify_chain.py", str(VERIFY_CHAIN))
        )
        script += f'\ncurl -s "{base_url}/api/alice/events?limit=1000" -H "$AUTH" > feed.json\n'
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=tasktrail_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "ok: 2 events, head " in result.stdout
    events: list[dict[str, Any]] = json.loads((cwd / "feed.json").read_text())
    return events


def verify(events: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(VERIFY_CHAIN)],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_first_session_creates_completes_and_verifies(
    alice_events: list[dict[str, Any]],
) -> None:
    """The pasted session leaves a created and a completed event, whose chain the script checks."""
    assert [event["type"] for event in alice_events] == ["TaskCreated", "TaskCompleted"]
    result = verify(alice_events)
    assert result.returncode == 0
    assert result.stdout.startswith("ok: 2 events, head ")


Events = list[dict[str, Any]]


def edit_data(events: Events) -> None:
    events[0]["data"]["title"] = "Buy beer"


def edit_time(events: Events) -> None:
    events[1]["occurred_at"] = "2020-01-01T00:00:00.000000Z"


def remove_first(events: Events) -> None:
    del events[0]


def reorder(events: Events) -> None:
    events.reverse()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (edit_data, "seq 1: data"),
        (edit_time, "seq 2: hash"),
        (remove_first, "seq 1: missing"),
        (reorder, "seq 1: missing"),
    ],
    ids=["edited-data", "edited-time", "removed-first", "reordered"],
)
def test_the_chain_script_names_the_first_broken_seq(
    alice_events: Events, tamper: Callable[[Events], None], message: str
) -> None:
    """Editing, removing or reordering an event makes the script fail at the first bad seq."""
    events: Events = json.loads(json.dumps(alice_events))
    tamper(events)
    result = verify(events)
    assert result.returncode == 1
    assert message in result.stderr
