"""Writing the log out: NDJSON or CSV, one event a line, exactly as stored."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from enum import StrEnum
from typing import TextIO

import orjson

from tasktrail.domain.encoding import canonical_json
from tasktrail.domain.event_record import EVENT_FIELD_NAMES, event_record
from tasktrail.domain.events import Event

CSV_COLUMNS = EVENT_FIELD_NAMES


class ExportFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


def write_events(events: Iterable[Event], out: TextIO, kind: ExportFormat) -> None:
    """Stream events to `out`; `data` in CSV is its canonical JSON, the text data_hash covers."""
    if kind is ExportFormat.NDJSON:
        for event in events:
            out.write(orjson.dumps(event_record(event), option=orjson.OPT_SORT_KEYS).decode())
            out.write("\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for event in events:
        record = event_record(event)
        record["data"] = canonical_json(event.data).decode()
        writer.writerow(["" if record[name] is None else record[name] for name in CSV_COLUMNS])
