"""The migration scripts keep meaning what they meant: none imports the package or reads another
revision's script; the SQL that runs inside PostgreSQL is in versioned files, loaded by version and
never changed once released; the newest append function names every column its tables have; and
a database written at revision 0001 upgrades to the head and verifies."""

from __future__ import annotations

import ast
import hashlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, exc, insert, inspect, select

from tasktrail.migrations import runner
from tasktrail.projections.verify import diff_read_model
from tasktrail.queries.audit import verify_user
from tasktrail.schema import events, tasks, user_streams
from tests.conftest import Api, new_user_id, scratch_postgres_database
from tests.test_document_migration import migrate

MIGRATIONS = Path(runner.__file__).parent
VERSIONS = MIGRATIONS / "versions"
SQL = MIGRATIONS.parent / "storage" / "postgres" / "sql"
SCRIPTS = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
SQL_FILES = sorted(SQL.glob("*.sql"))
SCRIPT_NAME = re.compile(r"\b\d{4}_\w+\.py\b")

# The released SQL files and the SHA-256 of their text. A database that ran a revision holds the
# function that revision's file made; a file edited afterwards would make new databases differ
# from old ones with nothing to tell. A revision that changes a function writes a new file (and
# adds its line here).
RELEASED = {
    "0010_tasktrail_append.sql": "5ac08821a3fcc43e942dd78681f276da55e572e5bd4795ec23986aa3cc4de660",
    "0013_tasktrail_append.sql": "74b7bc3f8884295264336b3eeb10ac292b836b9cdecab6a53f6eb1f7281f0d37",
    "0013_tasktrail_task_document.sql": (
        "901126b402684e89c061ea77cf6850232af2b3d6f3eca18bbd3182abb3e8320b"
    ),
    "0015_tasktrail_feed_horizon_held_seconds.sql": (
        "6cfee994aee8b541077c09984b085bfaec114c3dedb697bfd6243e9b1113e738"
    ),
    "0016_tasktrail_append.sql": "925839758def342b18c87c1213a93cb9c22fb8aaddb10b1326b28814fd714096",
    "0016_tasktrail_claim_key.sql": (
        "cc9fd9af91032e05c0d06af15a339dcc75d2691469c7199c5ce85c35ac0664eb"
    ),
}


def revision_of(path: Path) -> str:
    return path.name[:4]


def test_there_are_scripts_and_sql_files_to_check() -> None:
    assert len(SCRIPTS) >= 15
    assert {path.name for path in SQL_FILES} >= {
        "0010_tasktrail_append.sql",
        "0013_tasktrail_append.sql",
        "0013_tasktrail_task_document.sql",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name[:4])
def test_a_revision_imports_nothing_of_the_package_and_loads_no_other_script(script: Path) -> None:
    """The package moves on; a revision that imported it (0009 imported the projector) would
    break the upgrade of an old database the day a field is added."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    imported = [
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    assert not [name for name in imported if name.split(".")[0] in {"tasktrail", "importlib"}]
    texts = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]
    named = [text for text in texts if isinstance(text, str) and SCRIPT_NAME.search(text)]
    assert not named, f"a revision names another revision's script: {named}"


def loaded_sql(script: Path) -> list[str]:
    """The SQL files a script loads: the literal names it gives `_sql`."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_sql"
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]


def test_each_sql_file_is_made_by_its_own_revision_and_loaded_by_version() -> None:
    """A file is loaded by the revision whose number it bears (its upgrade), and otherwise only
    by later ones (a downgrade going back to it); every name a script loads exists."""
    loaders: dict[str, set[str]] = {}
    for script in SCRIPTS:
        for name in loaded_sql(script):
            assert (SQL / name).is_file(), f"{script.name} loads {name}, which does not exist"
            assert name[:4] <= revision_of(script), f"{script.name} loads a later file, {name}"
            loaders.setdefault(name, set()).add(revision_of(script))
    for path in SQL_FILES:
        assert path.name[:4] in loaders.get(path.name, set()), (
            f"no revision {path.name[:4]} loads it"
        )


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: path.name)
def test_a_released_sql_file_never_changes(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert RELEASED.get(path.name) == digest, (
        f"{path.name} is not the text that was released ({digest}): write a new revision and a "
        "file of its own instead"
    )


# --- The newest function names every column of its tables ---------------------------------------


def newest(function: str) -> str:
    """The text of the newest file that makes `function`: the one a database at head runs."""
    making = [path for path in SQL_FILES if f"FUNCTION {function}(" in path.read_text()]
    assert making, f"no file makes {function}"
    return making[-1].read_text(encoding="utf-8")


def names(listed: str) -> list[str]:
    return [name.strip() for name in listed.split(",")]


def listed_after(pattern: str, text: str) -> list[str]:
    found = re.findall(pattern, text, flags=re.DOTALL)
    assert len(found) == 1, f"{pattern!r} matches {len(found)} times"
    return names(found[0])


def columns_of(table: str) -> list[str]:
    return {"events": events, "tasks": tasks, "user_streams": user_streams}[table].c.keys()


def test_the_append_function_names_every_column_of_events_but_the_two_the_database_fills() -> None:
    appended = listed_after(r"INSERT INTO events \(([^)]*)\)", newest("tasktrail_append"))
    assert appended == [
        name for name in columns_of("events") if name not in {"position", "xact_id"}
    ]


def test_the_append_function_writes_every_column_of_the_tasks_row() -> None:
    """jsonb_populate_record fills the row from the service's document of it; the update of an
    existing row lists every column but the id, twice, in one order."""
    text = newest("tasktrail_append")
    assigned = listed_after(r"ON CONFLICT \(id\) DO UPDATE SET \(([^)]*)\)", text)
    values = listed_after(r"\) = ROW\(([^)]*)\)", text)
    assert assigned == [name for name in columns_of("tasks") if name != "id"]
    assert values == [f"excluded.{name}" for name in assigned]


def test_the_append_function_moves_every_column_of_the_users_stream() -> None:
    text = newest("tasktrail_append")
    inserted = listed_after(r"INSERT INTO user_streams AS s \(([^)]*)\)", text)
    moved = listed_after(r"UPDATE user_streams\s+SET (.*?)\s+WHERE", text)
    assert inserted == columns_of("user_streams")
    assert [assignment.split("=")[0].strip() for assignment in moved] == inserted[1:]


# --- A database written at 0001 upgrades to the head ---------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_at_0001(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database migrated to revision 0001 only."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'at_0001.db'}"
        engine = create_engine(url)
        yield from _at_0001(engine)
        return
    with scratch_postgres_database("tasktrail_at_0001") as url:
        yield from _at_0001(create_engine(url))


def _at_0001(engine: Engine) -> Iterator[Engine]:
    with engine.begin() as conn:
        migrate(conn, "upgrade", "0001")
    try:
        yield engine
    finally:
        engine.dispose()


_FILLED_BY_THE_DATABASE = frozenset({"position", "xact_id"})


def copy_as_0001_holds_it(conn: Connection, source: Engine, user_id: str) -> None:
    """The user's rows of the service's database, as the tables of revision 0001 hold them:
    only the columns they had then, but the two the target's database fills itself."""
    with warnings.catch_warnings():
        # Only the names are read; SQLAlchemy knows no type for PostgreSQL's xid8.
        warnings.filterwarnings("ignore", "Did not recognize type 'xid8'", exc.SAWarning)
        had = {
            table: {column["name"] for column in inspect(conn).get_columns(table)}
            for table in ("events", "user_streams", "tasks")
        }
    with source.connect() as read:
        for table in (events, user_streams, tasks):
            kept = [
                column
                for column in table.c
                if column.name in had[table.name] and column.name not in _FILLED_BY_THE_DATABASE
            ]
            order = table.c.position if table is events else table.c.user_id
            rows = read.execute(select(*kept).where(table.c.user_id == user_id).order_by(order))
            conn.execute(insert(table), [row._asdict() for row in rows])


def test_a_database_written_at_0001_upgrades_to_the_head_and_verifies(
    database_at_0001: Engine, engine: Engine, client: TestClient
) -> None:
    """A user's tasks written (by today's service) and copied into a database at 0001, in the
    columns that revision had; upgraded to the head, every row is the one the service wrote,
    the read model is the replay of the log, and the chain verifies."""
    user_id = new_user_id()
    api = Api(client, user_id)
    plain = api.create(title="Buy milk ☕")["id"]
    rich = api.create(title="Ünïcödé", description="d", tags=["home", "Work"], priority=3)["id"]
    api.request("PATCH", f"/{rich}", json={"due_at": "2026-12-24T18:00:00.5+01:00"})
    api.request("PATCH", f"/{plain}/complete")
    gone = api.create(title="gone")["id"]
    api.request("DELETE", f"/{gone}")
    with database_at_0001.begin() as conn:
        copy_as_0001_holds_it(conn, engine, user_id)

    with database_at_0001.begin() as conn:
        migrate(conn, "upgrade", "head")
    database_at_0001.dispose()

    def rows(of: Engine) -> list[dict[str, object]]:
        with of.connect() as conn:
            found = conn.execute(
                select(tasks).where(tasks.c.user_id == user_id).order_by(tasks.c.id)
            )
            return [row._asdict() for row in found]

    assert rows(database_at_0001) == rows(engine)
    assert len(rows(engine)) == 3
    assert list(diff_read_model(database_at_0001)) == []
    with database_at_0001.connect() as conn:
        report = verify_user(conn, user_id)
    assert report.ok, report
    assert report.events == 6
