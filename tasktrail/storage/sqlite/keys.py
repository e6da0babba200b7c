"""An Idempotency-Key's three steps on SQLite: claim, replay, record, in the write's transaction.

The key is claimed at the start of the write's own transaction and its answer stored in that
same transaction: a key exists exactly when its write committed. On SQLite the transaction holds
the database's write lock from its first statement (`BEGIN IMMEDIATE`), so a duplicate waits for
its first request there, and then finds the key taken. The key is stamped and its age read on
the adapter's clock, the one its events are stamped with (the system's, in the service): an
embedded database has no clock of its own.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import sqlite

from tasktrail.schema import idempotency_keys
from tasktrail.storage.port import KEY_LIFETIME, Clock, KeptAnswer, KeyClaim, StoredAnswer


def claim(conn: Connection, user_id: str, key: KeyClaim, clock: Clock) -> StoredAnswer | None:
    """Insert the key (None), or find it taken and return the answer its first request kept."""
    now = clock()
    mine = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key.key)
    # Expired keys of this user go first, so an old key can be used afresh.
    conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id,
            idempotency_keys.c.created_at < now - KEY_LIFETIME,
        )
    )
    claimed = conn.execute(
        sqlite.insert(idempotency_keys)
        .values(user_id=user_id, key=key.key, fingerprint=key.fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=[idempotency_keys.c.user_id, idempotency_keys.c.key])
        .returning(idempotency_keys.c.key)
    ).first()
    if claimed is not None:
        return None
    stored = conn.execute(select(idempotency_keys).where(mine)).one()
    return StoredAnswer(stored.fingerprint, stored.status_code, stored.headers, stored.body)


def record(conn: Connection, user_id: str, key: str, answer: KeptAnswer) -> None:
    """Keep a success under the key; release the key of anything else."""
    mine = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key)
    if not answer.kept:
        conn.execute(delete(idempotency_keys).where(mine))
        return
    conn.execute(
        update(idempotency_keys)
        .where(mine)
        .values(status_code=answer.status_code, headers=answer.headers, body=answer.body)
    )
