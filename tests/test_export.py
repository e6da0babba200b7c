"""`tasktrail audit export`: the filtered history as NDJSON or CSV, exactly as stored."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from tests.audit_helpers import settle
from tests.conftest import Api
from tests.processes import run_cli


def test_ndjson_export_of_a_user_is_their_feed_as_served(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    """One event a line, in order, each the same object the API serves."""
    first = api.create(title="caf\u00e9")
    api.request("PATCH", f"/{first['id']}/complete")
    api.create(title="second")
    settle(api.client, api.user_id, 3)  # the export hands out what is past the feed's horizon
    out = tmp_path / "events.ndjson"
    result = run_cli(
        "audit",
        "export",
        "--user",
        api.user_id,
        "-o",
        str(out),
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=database_url,
    )
    assert result.returncode == 0, result.stderr
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    feed = api.client.get(f"/api/{api.user_id}/events", headers=api.headers).json()
    assert exported == feed
    assert [event["seq"] for event in exported] == [1, 2, 3]


def test_csv_export_keeps_data_as_the_canonical_json_its_hash_covers(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    """In CSV, data is canonical JSON text: its SHA-256 is the data_hash beside it."""
    api.create(title="\u00fcber", tags=["b", "a"])
    since = api.history(api.create(title="later")["id"])[0]["occurred_at"]
    settle(api.client, api.user_id, 2)
    result = run_cli(
        "audit",
        "export",
        "--user",
        api.user_id,
        "--format",
        "csv",
        "--since",
        since,
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=database_url,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [row["seq"] for row in rows] == ["2"]  # --since leaves the first event out
    row = rows[0]
    assert hashlib.sha256(row["data"].encode()).hexdigest() == row["data_hash"]
    assert json.loads(row["data"])["title"] == "later"
