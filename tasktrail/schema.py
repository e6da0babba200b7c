"""The storage schema, in SQLAlchemy Core, shared by PostgreSQL and SQLite.

The Alembic history in `tasktrail/migrations` creates these tables; this module is what the code
queries with. A test compares the two so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, UserDefinedType

from tasktrail.domain.state import DESCRIPTION_MAX, PRIORITY_MAX, PRIORITY_MIN, TITLE_MAX

metadata = MetaData()

USER_ID_LENGTH = 128
HASH_LENGTH = 64
# A folded copy's room, in characters of the text it folds: str.casefold() turns one character
# into at most three (U+0390 into three), so four leave a margin.
FOLDED_ROOM = 4


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines, to the microsecond.

    PostgreSQL stores `timestamptz`. SQLite has no time zones: it keeps the UTC wall time as
    fixed-width text (`YYYY-MM-DD HH:MM:SS.ffffff`), which sorts and compares in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: the log orders by absolute time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id, which gives the feed its commit-safe order."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "xid8"


JsonDocument = JSON().with_variant(JSONB(), "postgresql")
Position = BigInteger().with_variant(Integer(), "sqlite")  # SQLite's rowid is INTEGER

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("user_id", String(USER_ID_LENGTH), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("task_id", Uuid(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("data", JsonDocument, nullable=False),
    Column("data_hash", String(HASH_LENGTH), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(USER_ID_LENGTH), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("prev_hash", String(HASH_LENGTH), nullable=False),
    Column("hash", String(HASH_LENGTH), nullable=False),
    # Filled by PostgreSQL itself (DEFAULT pg_current_xact_id()); NULL on SQLite, where
    # writers are serialised and position order is already commit order.
    Column("xact_id", Xid8().with_variant(BigInteger(), "sqlite"), nullable=True),
    UniqueConstraint("user_id", "seq", name="uq_events_user_seq"),
    UniqueConstraint("task_id", "version", name="uq_events_task_version"),
    sqlite_autoincrement=True,
)

user_streams = Table(
    "user_streams",
    metadata,
    Column("user_id", String(USER_ID_LENGTH), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("head_hash", String(HASH_LENGTH), nullable=False),
    Column("last_occurred_at", UTCDateTime, nullable=True),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid(as_uuid=True), primary_key=True),
    Column("user_id", String(USER_ID_LENGTH), nullable=False),
    Column("title", String(TITLE_MAX), nullable=False),
    # Case-folded copies, computed by the service with str.casefold() so that both engines sort
    # and search alike (neither engine's lower() folds like Python does).
    # Collated by code point on PostgreSQL too (migration 0004), as SQLite compares text.
    Column(
        "title_folded",
        String(FOLDED_ROOM * TITLE_MAX).with_variant(
            String(FOLDED_ROOM * TITLE_MAX, collation="C"), "postgresql"
        ),
        nullable=False,
    ),
    Column("description", String(DESCRIPTION_MAX), nullable=True),
    Column("description_folded", String(FOLDED_ROOM * DESCRIPTION_MAX), nullable=True),
    Column("completed", Boolean, nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("priority", SmallInteger, nullable=False),
    Column("tags", JsonDocument, nullable=False),
    Column("tags_folded", JsonDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    # What a read sends, written by the projector with the row (domain/document.py): the
    # task's JSON document, the exact text served, and its ETag, `"<version>"`. Reads send them
    # as they are instead of building the task's JSON again for every row.
    Column("body", Text, nullable=False),
    Column("etag", Text, nullable=False),
    CheckConstraint(
        f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}", name="ck_tasks_priority"
    ),
    Index("ix_tasks_user_created", "user_id", "created_at", "id"),
    Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
    Index("ix_tasks_user_title", "user_id", "title_folded", "id"),
    Index("ix_tasks_user_due", "user_id", "due_at", "id"),
    Index("ix_tasks_user_priority", "user_id", "priority", "id"),
    Index("ix_tasks_user_last_seq", "user_id", "last_seq"),
)

# The first 2xx response of a keyed write, stored in that write's own transaction, so a key is
# kept exactly when its write committed. Keyed by user: keys of different users never meet.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(USER_ID_LENGTH), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(HASH_LENGTH), nullable=False),
    Column("status_code", SmallInteger, nullable=True),
    Column("headers", JSON, nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# The latest rebuild's progress, one row (id 1), written by `projections rebuild` as it goes and
# read by the service's /metrics: the rebuild is a process of its own, maybe on another machine,
# and the database is what both see (projections/progress.py).
rebuild_progress = Table(
    "rebuild_progress",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("phase", String(32), nullable=False),
    Column("events_done", BigInteger, nullable=False),
    Column("events_total", BigInteger, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", String(16), nullable=True),
    CheckConstraint("id = 1", name="ck_rebuild_progress_one_row"),
)
