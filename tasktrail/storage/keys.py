"""The background sweep of expired Idempotency-Keys, on either engine.

A user's own expired keys also go at their next keyed write (the adapters' claim); this sweep
catches the keys of users who do not come back. It runs in the background, never on the request
path. On PostgreSQL a key's age is read on the database's clock, the clock `tasktrail_claim_key`
stamps keys with, and the service's role reaches other users' keys only in a transaction that
says it sweeps, and then only keys older than 24 h by that clock (migration 0014). On SQLite the
service's clock is the one clock there is: `clock`, the system's unless the caller passes the
one its SQLite adapter stamps keys with.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, func, text

from tasktrail.database import write_transaction
from tasktrail.row_security import SET_SWEEP_SQL
from tasktrail.schema import idempotency_keys
from tasktrail.storage.port import KEY_LIFETIME, Clock, system_clock


def purge_expired(engine: Engine, clock: Clock = system_clock) -> int:
    """Delete every user's keys older than `KEY_LIFETIME`; returns how many went. `clock` is
    read on SQLite only: PostgreSQL's keys age on the database's own."""
    with write_transaction(engine) as conn:
        created_at = idempotency_keys.c.created_at
        if conn.dialect.name == "postgresql":
            conn.execute(text(SET_SWEEP_SQL))
            expired = created_at < func.now() - KEY_LIFETIME
        else:
            expired = created_at < clock() - KEY_LIFETIME
        result = conn.execute(delete(idempotency_keys).where(expired))
    return result.rowcount
