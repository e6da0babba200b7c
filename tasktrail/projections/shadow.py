"""The shadow table a rebuild fills: made like `tasks`, written in bulk, digested, swapped in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, MetaData, Table, select, text

from tasktrail.database import writing
from tasktrail.domain.fields import ROW_COLUMNS, Kind
from tasktrail.projections.inline import TASK_COLUMNS
from tasktrail.projections.row_digest import row_digest, sql_row_digest
from tasktrail.schema import tasks

SHADOW = "tasks_shadow"
RETIRED = "tasks_retired"
shadow_tasks: Table = tasks.to_metadata(MetaData(), name=SHADOW)
# The positions of the columns that hold a list of strings (a list field and its folded copy):
# COPY sends them as JSON text.
_JSON_COLUMNS = tuple(index for index, (_, kind) in enumerate(ROW_COLUMNS) if kind is Kind.STRINGS)
# Built from constants only (no input reaches these): the row digest in SQL, a filter by id.
SQL_DIGEST = sql_row_digest()
_AMONG_IDS = " WHERE id = ANY(CAST(:ids AS uuid[]))"


class RebuildAborted(Exception):
    """The shadow table did not match the fold; the live table was left as it was."""


def create_shadow(engine: Engine) -> None:
    with writing(engine).begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {SHADOW}"))
        if _postgres(conn):
            # Columns, types, collations, defaults and checks as the live table has them today
            # (whatever migrations did); the primary key and indexes come after the load.
            conn.execute(
                text(f"CREATE TABLE {SHADOW} (LIKE tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            )
        else:
            ddl = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
            ).scalar_one()
            conn.execute(text(re.sub(r'^CREATE TABLE\s+"?tasks"?', f"CREATE TABLE {SHADOW}", ddl)))


def index_definitions(conn: Connection) -> list[tuple[str, str]]:
    """The live table's secondary indexes: (name, CREATE INDEX statement)."""
    if _postgres(conn):
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'tasks' AND indexname <> 'tasks_pkey'"
            )
        )
    else:
        rows = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' "
                "AND sql IS NOT NULL"
            )
        )
    return [(row[0], row[1]) for row in rows]


def build_indexes(engine: Engine) -> list[tuple[str, str]]:
    """On PostgreSQL, the live table's indexes and primary key on the shadow table, under names
    of their own, and its statistics (the planner must know the new table from its first
    query): all before the fence. Returns the live indexes, (name, definition)."""
    with engine.connect() as conn:
        indexes = index_definitions(conn)
        if _postgres(conn):
            for name, definition in indexes:
                conn.execute(text(_on_shadow(definition, name)))
            conn.execute(
                text(f"ALTER TABLE {SHADOW} ADD CONSTRAINT {SHADOW}_pkey PRIMARY KEY (id)")
            )
            conn.execute(text(f"ANALYZE {SHADOW}"))
            conn.commit()
    return indexes


def write_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows (`task_values`) into the shadow table."""
    if not rows:
        return
    if not _postgres(conn):
        conn.execute(
            shadow_tasks.insert(),
            [
                {**dict(zip(TASK_COLUMNS, row, strict=True)), "id": uuid.UUID(row[0])}
                for row in rows
            ],
        )
        return
    raw: Any = conn.connection.driver_connection
    dumps = orjson.dumps
    # The driver's own COPY, in text: every value goes as text, the JSON lists as JSON text.
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {SHADOW} ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = list(row)
            for index in _JSON_COLUMNS:
                values[index] = dumps(values[index]).decode()
            copy.write_row(values)


def write_batch(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    """One short transaction a batch: on SQLite the write lock is held for a batch only, so the
    service's writers go on between batches."""
    with writing(engine).begin() as writer:
        write_rows(writer, rows)


def stored_digests(conn: Connection, task_ids: Sequence[str] | None) -> Iterator[tuple[str, int]]:
    """(task id, row digest) of rows of the shadow table: all of them, or those of `task_ids`."""
    if _postgres(conn):
        where, params = ("", {}) if task_ids is None else (_AMONG_IDS, {"ids": list(task_ids)})
        statement = f"SELECT id::text, {SQL_DIGEST} FROM {SHADOW}{where}"  # noqa: S608
        rows = conn.execute(text(statement), params)
        for task_id, digest in rows:
            yield task_id, int(digest)
        return
    query = select(shadow_tasks)
    if task_ids is not None:
        query = query.where(shadow_tasks.c.id.in_([uuid.UUID(task) for task in task_ids]))
    for row in conn.execution_options(yield_per=10_000).execute(query):
        values = tuple(row)
        yield str(values[0]), row_digest(values)


def swap(conn: Connection, indexes: list[tuple[str, str]]) -> None:
    if _postgres(conn):
        copy_access_rules(conn)
    conn.execute(text(f"ALTER TABLE tasks RENAME TO {RETIRED}"))
    conn.execute(text(f"ALTER TABLE {SHADOW} RENAME TO tasks"))
    conn.execute(text(f"DROP TABLE {RETIRED}"))
    if _postgres(conn):
        conn.execute(text(f"ALTER TABLE tasks RENAME CONSTRAINT {SHADOW}_pkey TO tasks_pkey"))
        for name, _ in indexes:
            conn.execute(text(f"ALTER INDEX {name}_shadow RENAME TO {name}"))
    else:
        for _, definition in indexes:
            conn.execute(text(definition))


def copy_access_rules(conn: Connection) -> None:
    """Give the shadow table the live table's grants, row-level security and policies
    (migration 0012), whatever migrations made them: the service's role must reach the rebuilt
    table exactly as it reached the old one, and through the same policies."""
    # The table's grants and each column's (an operator may have granted a reporting role some
    # columns only), each with its grant option: the owner's own are the new table's already.
    grants = conn.execute(
        text(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,"
            " a.privilege_type, a.is_grantable, NULL FROM pg_class c"
            " CROSS JOIN aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE c.oid = 'tasks'::regclass AND a.grantee <> c.relowner"
            " UNION ALL"
            " SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,"
            " a.privilege_type, a.is_grantable, quote_ident(att.attname) FROM pg_attribute att"
            " JOIN pg_class c ON c.oid = att.attrelid CROSS JOIN aclexplode(att.attacl) a"
            " LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE c.oid = 'tasks'::regclass AND NOT att.attisdropped"
            " AND a.grantee <> c.relowner"
        )
    )
    for grantee, privilege, grantable, column in grants:
        on_what = privilege if column is None else f"{privilege} ({column})"
        option = " WITH GRANT OPTION" if grantable else ""
        conn.execute(text(f"GRANT {on_what} ON {SHADOW} TO {grantee}{option}"))
    enabled, forced = conn.execute(
        text(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tasks'::regclass"
        )
    ).one()
    if enabled:
        conn.execute(text(f"ALTER TABLE {SHADOW} ENABLE ROW LEVEL SECURITY"))
    if forced:
        conn.execute(text(f"ALTER TABLE {SHADOW} FORCE ROW LEVEL SECURITY"))
    policies = conn.execute(
        text(
            "SELECT quote_ident(policyname), permissive, cmd,"
            " array_to_string(ARRAY(SELECT quote_ident(role) FROM unnest(roles) role), ', '),"
            " qual, with_check FROM pg_policies"
            " WHERE schemaname = current_schema() AND tablename = 'tasks'"
        )
    )
    for name, permissive, command, roles, using, check in policies:
        statement = f"CREATE POLICY {name} ON {SHADOW} AS {permissive} FOR {command} TO {roles}"
        statement += "" if using is None else f" USING ({using})"
        statement += "" if check is None else f" WITH CHECK ({check})"
        conn.execute(text(statement))


def _on_shadow(definition: str, name: str) -> str:
    """The live index's definition, for the shadow table under a name of its own.

    pg_indexes qualifies the table with its schema, whichever it is (public or another).
    """
    renamed, found = re.subn(
        rf"INDEX {re.escape(name)} ON ((?:\S+\.)?)tasks ",
        rf"INDEX {name}_shadow ON \g<1>{SHADOW} ",
        definition,
        count=1,
    )
    if not found:
        raise RebuildAborted(f"cannot read the definition of index {name}: {definition}")
    return renamed


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
