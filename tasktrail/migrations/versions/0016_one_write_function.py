"""tasktrail_append claims its key through tasktrail_claim_key and returns every event's hash.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

PostgreSQL's adapter of the write port (storage/postgres/) applies every write through
`tasktrail_append`: a write decided on an unlocked snapshot in one call, and, when that snapshot
moved, a write decided again under the user's stream lock in a transaction that ends with the
same call. So there is one implementation of the append, the task's row and the key's record on
PostgreSQL, this one; the long way no longer runs its own statements from Python.

- `tasktrail_claim_key(user_id, key, fingerprint, lifetime, wait_ms)` claims a key on the
  database's clock. The long way calls it first, before it takes the stream (the order every
  keyed write takes its locks in: the key, then the stream), to replay a kept answer before it
  decides. `tasktrail_append` calls it too, and a key its caller claimed earlier in the same
  transaction (one with no answer yet) counts as the caller's own.
- `tasktrail_append` returns the hash of every event it appended (`hashes`, in place of the last
  one, `head_hash`): the service links the events it hands back from them, instead of hashing
  every event again to check the database's hash (a test holds the two encodings to one hash).

The return type changes, so the function is dropped and made again. A service older than this
revision reads the old return: stop it before upgrading (`tasktrail db upgrade`, then `serve`).
The texts are in `storage/postgres/sql/0016_*.sql`, which never change once released.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_APPEND = (
    "tasktrail_append(text, uuid, integer, timestamptz, text, text, smallint, text[], jsonb[], "
    "text[], bytea[], bytea[], bytea[], jsonb, text, text, interval, integer, smallint, json, bytea)"
)
_CLAIM = "tasktrail_claim_key(text, text, text, interval, integer)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {_APPEND}")
    op.execute(_sql("0016_tasktrail_claim_key.sql"))
    op.execute(_sql("0016_tasktrail_append.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {_APPEND}")
    op.execute(f"DROP FUNCTION {_CLAIM}")
    op.execute(_sql("0013_tasktrail_append.sql"))  # the function as it was before


def _sql(name: str) -> str:
    # The versioned SQL files live with the PostgreSQL adapter (tasktrail/storage/postgres/sql/).
    return (Path(__file__).parents[2] / "storage" / "postgres" / "sql" / name).read_text(
        encoding="utf-8"
    )
