"""Row-level security on idempotency_keys and user_streams too (PostgreSQL only).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03

0012 bound the service's role on `tasks` and `events`; the two other tables keyed by user get the
same policy: a row is the service's to read and write only when its `user_id` is the
transaction's `tasktrail.user_id`. Every request already sets that scope before it touches them
(tasktrail_append and the long way of a write set it first), so no statement is added.

Two kinds of transaction reach rows of other users, and get a policy each:
- The audit API's chain check (`/api/audit/users/{id}/verify`) holds the chain to the head in
  `user_streams`: an auditor's transaction (`tasktrail.audit` = `on`) reads every user's stream,
  as it reads every user's events, and writes none.
- The background sweep deletes every user's expired idempotency keys, in a transaction with no
  user. It says so with a setting of its own, `tasktrail.sweep` = `on`, which shows it keys older
  than their 24 h and nothing else: it can read and delete those, and change or see no live one.

Why a setting, not a policy that admits any expired key to every transaction: a DELETE whose
WHERE reads a column (the sweep's `created_at < cutoff`) also needs the row to pass a SELECT
policy, so such a policy would have to let every transaction, unscoped ones included, read the
stored answers (other users' task documents) of every expired key not swept yet. With the
setting, a transaction of a request still sees its own user's keys only, and one with no scope
sees none.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Spelled out, not imported: a migration keeps meaning what it meant.
_ROLE = "tasktrail_service"
_OWN_ROW = "user_id = current_setting('tasktrail.user_id', true)"
_AUDITING = "current_setting('tasktrail.audit', true) = 'on'"
# The key lifetime of storage/port.py (KEY_LIFETIME): the sweep reaches no younger key.
_SWEEPING = (
    "current_setting('tasktrail.sweep', true) = 'on' AND created_at < now() - interval '24 hours'"
)

_TABLES = ("idempotency_keys", "user_streams")
# What reaches other users' rows: the policy's name, table, command, and which rows.
_READERS = (
    ("user_streams_for_audit", "user_streams", "SELECT", _AUDITING),
    # SELECT as well as DELETE: the sweep's DELETE has a WHERE, which needs both.
    ("idempotency_keys_expired_for_the_sweep", "idempotency_keys", "SELECT", _SWEEPING),
    ("idempotency_keys_swept", "idempotency_keys", "DELETE", _SWEEPING),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has neither roles nor row security
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_of_the_user ON {table} TO {_ROLE} "
            f"USING ({_OWN_ROW}) WITH CHECK ({_OWN_ROW})"
        )
    for name, table, command, rows in _READERS:
        op.execute(f"CREATE POLICY {name} ON {table} FOR {command} TO {_ROLE} USING ({rows})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _, _ in _READERS:
        op.execute(f"DROP POLICY {name} ON {table}")
    for table in _TABLES:
        op.execute(f"DROP POLICY {table}_of_the_user ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
