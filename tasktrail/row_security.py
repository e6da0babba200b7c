"""Whose rows a transaction may see on PostgreSQL: the request's scope, set in the transaction.

Row-level security on `tasks`, `events` (migration 0012), `user_streams` and `idempotency_keys`
(0014) lets the service's role see a row only when the row's `user_id` is the transaction's
`tasktrail.user_id` setting, or, reading `events` and `user_streams`, when its `tasktrail.audit`
setting is `on`. So a query that forgot its `WHERE user_id` still sees one user's rows, and a
transaction that set no scope sees none: a mistake fails closed. One transaction outside any
request reaches other users' rows: the background sweep of idempotency keys, which sets
`tasktrail.sweep` and then reads and deletes expired keys, and no others.
The migrations' owner (and the operator's commands, which run as the owner) is not bound by it.

The scope is the request's: authentication sets the user's, the audit routes the auditor's, in
a context variable that follows the request into its worker threads. Each transaction then
sets it with `set_config(..., true)`, which ends with the transaction, so a pooled connection
carries nothing over to the next request. SQLite has no roles and no row security: there the
scope is not used.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

# The NOLOGIN role that holds the service's privileges (migration 0012); the login role the
# service connects as is made a member of it by the operator (README, "PostgreSQL roles").
SERVICE_ROLE = "tasktrail_service"
USER_SETTING = "tasktrail.user_id"
AUDIT_SETTING = "tasktrail.audit"

# Both settings in one statement, both local to the transaction.
SET_SCOPE_SQL = (
    f"SELECT set_config('{USER_SETTING}', %s, true), set_config('{AUDIT_SETTING}', %s, true)"
)
# The sweep's transaction: every user's expired idempotency keys (migration 0014), to delete.
SET_SWEEP_SQL = "SELECT set_config('tasktrail.sweep', 'on', true)"


@dataclass(frozen=True, slots=True)
class DatabaseScope:
    """The rows a request may reach: one user's, or (reading the log) every user's."""

    user_id: str = ""
    audit: bool = False

    def parameters(self) -> tuple[str, str]:
        return self.user_id, "on" if self.audit else ""


NO_SCOPE = DatabaseScope()
_scope: ContextVar[DatabaseScope] = ContextVar("tasktrail_database_scope", default=NO_SCOPE)


def scope_to_user(user_id: str) -> None:
    """The rest of this request reaches this user's rows."""
    _scope.set(DatabaseScope(user_id=user_id))


def scope_to_audit() -> None:
    """The rest of this request reads every user's log (an auditor's request)."""
    _scope.set(DatabaseScope(audit=True))


def current_scope() -> DatabaseScope:
    return _scope.get()


# Whether the connected role is bound by row security, and whether it is in the service's role.
ROLE_CHECK_SQL = (
    "SELECT row_security_active('tasks'), CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname"
    " = 'tasktrail_service') THEN pg_has_role(current_user, 'tasktrail_service', 'MEMBER') END"
)


def role_problem(bound: bool, member: bool | None) -> str | None:
    """What is wrong with the role the service connects as, or None when it is as it should be:
    a member of tasktrail_service, bound by row security."""
    if not bound:
        return (
            "the service connects as a role that row-level security does not bind (the tables' "
            f"owner?): connect as a login role in {SERVICE_ROLE} (README, PostgreSQL roles)"
        )
    if not member:
        return (
            f"the service's role is not in {SERVICE_ROLE}: row-level security shows it no row "
            "at all; make it a member (db upgrade --service-login)"
        )
    return None
