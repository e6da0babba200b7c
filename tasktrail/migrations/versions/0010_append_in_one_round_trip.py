"""tasktrail_append(): a decided write applied by PostgreSQL in one call, one round trip.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The service decides a write on a snapshot of the task (its read-model row, read without a lock)
and hands PostgreSQL the result: the events, the task's new row, and the answer to keep for its
Idempotency-Key. This function takes the user's stream, checks that the snapshot still holds
(the task's last version is the one the write was decided on, and the stream's last event is not
later than the write's clock), numbers the events, links and hashes them, appends them, moves the
stream's head, writes the task's row and records the key, all in the one transaction of the call.
When the snapshot no longer holds it raises SQLSTATE TT001 and nothing is written: the service
then runs the write again the long way, deciding under the stream's lock
(commands/on_postgres.py).

The hash is computed here over bytes the service encoded: for each event, its canonical JSON
with the `prev_hash` value and the `seq` digits cut out (`HashTemplate`, domain/chain.py). The
database splices the two in and takes the SHA-256, so it never encodes JSON itself, and the hash
is byte for byte the one the contract defines (a test computes it both ways). PostgreSQL only;
SQLite keeps its own path.

The function's text is in `storage/postgres/sql/0010_tasktrail_append.sql`, which never changes once
released: a revision that changes the function writes a file of its own.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_DROP = (
    "DROP FUNCTION tasktrail_append(text, uuid, integer, timestamptz, text, text, smallint, "
    "text[], jsonb[], text[], bytea[], bytea[], bytea[], jsonb, text, text, interval, integer, "
    "smallint, json, bytea)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0010_tasktrail_append.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP)


def _sql(name: str) -> str:
    # The versioned SQL files live with the PostgreSQL adapter (tasktrail/storage/postgres/sql/).
    return (Path(__file__).parents[2] / "storage" / "postgres" / "sql" / name).read_text(
        encoding="utf-8"
    )
