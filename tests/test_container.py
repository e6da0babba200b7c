"""The Dockerfile and compose.yaml, checked without Docker: they name commands, options and
routes that exist, run as a user without privileges, and migrate once before the api starts."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import typer.main
import yaml

from tasktrail.api.app import create_app
from tasktrail.cli import app as cli_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  the address the container listens on, compared here
DIGEST = r"@sha256:[0-9a-f]{64}"
INIT_DIRECTORY = "/docker-entrypoint-initdb.d/"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, stage by stage: (KEYWORD, arguments), continuation lines
    joined, comments left out."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, arguments = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def instruction(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for name, arguments in stage if name == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list), f"not the exec form: {arguments}"
    return [str(word) for word in words]


def parse_cli(words: list[str]) -> tuple[str, dict[str, Any]]:
    """The command of the tasktrail CLI these words run, and its parsed options; typer raises
    on a command or an option that does not exist, or a value of the wrong type."""
    command = typer.main.get_command(cli_app)
    path: list[str] = []
    words = list(words)
    while isinstance(command, typer.core.TyperGroup):
        assert words, f"`tasktrail {' '.join(path)}` needs a subcommand"
        name = words.pop(0)
        sub = command.get_command(typer.Context(command), name)
        assert sub is not None, f"tasktrail has no command {' '.join([*path, name])}"
        path.append(name)
        command = sub
    context = command.make_context(" ".join(path), words)
    return " ".join(path), context.params


def with_defaults(words: list[str]) -> list[str]:
    """Compose's `${NAME:-default}` as its default."""
    return [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", word) for word in words]


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return data


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


# --- Dockerfile -------------------------------------------------------------------------------


def test_every_stage_starts_from_a_slim_python_pinned_by_digest() -> None:
    """A build stage and a runtime stage, both on one image: python:3.11-slim or 3.12-slim,
    its tag kept for readers and pinned by its digest, which the build then takes."""
    stages = dockerfile_stages()
    assert len(stages) >= 2
    images = {stage[0][1].split()[0] for stage in stages}
    assert len(images) == 1, images
    (image,) = images
    assert re.fullmatch(rf"python:3\.1[12]-slim{DIGEST}", image), image


def test_the_image_serves_on_all_interfaces_on_port_8000() -> None:
    """ENTRYPOINT and CMD make `tasktrail serve --host 0.0.0.0 --port 8000`, a command and
    options the CLI has, and the script is the one pyproject declares."""
    stage = final_stage()
    entrypoint = exec_form(instruction(stage, "ENTRYPOINT"))
    command = exec_form(instruction(stage, "CMD"))
    assert entrypoint[0] in project()["scripts"]
    name, params = parse_cli(entrypoint[1:] + command)
    assert name == "serve"
    assert (params["host"], params["port"]) == (ALL_INTERFACES, 8000)
    assert instruction(stage, "EXPOSE") == "8000"


def test_the_healthcheck_asks_readyz_a_route_of_the_app(tmp_path: Path) -> None:
    """HEALTHCHECK fetches a path the app serves, /readyz, on the exposed port, with python
    (slim has no curl)."""
    check = instruction(final_stage(), "HEALTHCHECK")
    words = exec_form(check.partition("CMD ")[2])
    assert words[0] == "python"
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", " ".join(words))
    assert match is not None, check
    port, path = match.groups()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'routes.db'}"))
    assert path == "/readyz"
    assert "get" in app.openapi()["paths"][path]
    assert port == instruction(final_stage(), "EXPOSE")


def test_the_service_runs_as_a_user_without_privileges() -> None:
    """The final stage switches to a named user other than root before it runs."""
    stage = final_stage()
    user = instruction(stage, "USER")
    assert user.partition(":")[0] not in {"root", "0"}
    keywords = [name for name, _ in stage]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_the_image_installs_the_wheel_of_this_project() -> None:
    """The runtime stage installs the wheel named after pyproject's project, built in the
    build stage from pyproject.toml and the package."""
    wheel = re.sub(r"[-_.]+", "_", project()["name"]).lower()
    installs = [args for name, args in final_stage() if name == "RUN" and "pip install" in args]
    assert any(re.search(rf"/{wheel}-\*\.whl", args) for args in installs), installs
    build = dockerfile_stages()[0]
    copied = " ".join(args for name, args in build if name == "COPY")
    assert "pyproject.toml" in copied
    assert "tasktrail" in copied
    assert any(name == "RUN" and "pip wheel" in args for name, args in build)


def test_no_secret_is_baked_into_the_image() -> None:
    """No ENV or ARG names a secret, a password or the database URL."""
    for stage in dockerfile_stages():
        for name, arguments in stage:
            if name in {"ENV", "ARG"}:
                assert not re.search(r"SECRET|PASSWORD|DATABASE_URL", arguments), arguments


def test_the_build_context_leaves_local_and_secret_files_out() -> None:
    """.dockerignore keeps the venv, the git directory, databases and secrets out."""
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", ".tasktrail-secret", "*.db"} <= ignored


# --- compose.yaml -----------------------------------------------------------------------------


def test_compose_has_the_database_a_one_shot_migration_and_the_api() -> None:
    """PostgreSQL 16 or 17 pinned by digest, with a pg_isready healthcheck over TCP (the
    image's server during initialisation listens on its Unix socket only) and a named volume;
    migrate waits for it to be healthy; the api waits for migrate to have succeeded."""
    document = compose()
    services = document["services"]
    assert set(services) == {"db", "migrate", "api"}
    db = services["db"]
    assert re.fullmatch(rf"postgres:1[67]{DIGEST}", db["image"]), db["image"]
    check = db["healthcheck"]["test"]
    assert "pg_isready" in check
    assert check[check.index("-h") + 1] == "127.0.0.1"
    volume = db["volumes"][0].split(":")[0]
    assert volume in document["volumes"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["api"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"}
    }
    assert services["migrate"]["restart"] == "no"


def test_migrations_run_once_in_migrate_and_never_in_the_api() -> None:
    """migrate runs `tasktrail db upgrade`; the api runs `serve --no-migrate` on all interfaces
    with several workers; both are commands and options the CLI has."""
    services = compose()["services"]
    assert parse_cli(services["migrate"]["command"]) == (
        "db upgrade",
        {"service_login": "tasktrail_api"},
    )
    name, params = parse_cli(with_defaults(services["api"]["command"]))
    assert name == "serve"
    assert params["no_migrate"] is True
    assert (params["host"], params["port"]) == (ALL_INTERFACES, 8000)
    assert params["workers"] > 1
    assert services["api"]["ports"] == ["8000:8000"]


def test_metrics_have_a_port_of_their_own_that_is_published_nowhere() -> None:
    """The api serves /metrics on a port of its own (the API's port answers it 404), exposed to
    the compose network only: no `ports:` entry names it, while the API's port is published."""
    api = compose()["services"]["api"]
    _, params = parse_cli(with_defaults(api["command"]))
    metrics_port = params["metrics_port"]
    assert metrics_port is not None
    assert metrics_port != params["port"]
    assert [str(port) for port in api["expose"]] == [str(metrics_port)]
    for published in api["ports"]:
        assert str(published).split(":")[-1].split("/")[0] != str(metrics_port), published
    assert [str(published) for published in api["ports"]] == [f"{params['port']}:{params['port']}"]


def init_script() -> tuple[Path, str]:
    """The db service's init script, as compose mounts it into the image's init directory."""
    mounts = [
        str(volume) for volume in compose()["services"]["db"]["volumes"] if INIT_DIRECTORY in volume
    ]
    assert len(mounts) == 1, mounts
    source, target = mounts[0].split(":")[:2]
    assert target.startswith(INIT_DIRECTORY)
    assert target.endswith(".sh")
    path = ROOT / source
    return path, path.read_text()


def test_the_tables_owner_is_an_ordinary_role_that_owns_the_database() -> None:
    """The cluster's superuser (POSTGRES_USER) only runs the init script, which makes the role
    migrate connects as: LOGIN and CREATEROLE (--service-login makes the api's login), never
    SUPERUSER, BYPASSRLS or CREATEDB, and the owner of the database both urls name."""
    services = compose()["services"]
    path, script = init_script()
    assert path.stat().st_mode & 0o111, "not executable: the image would source it"
    role = re.search(r"CREATE ROLE (\w+) ([^;]*);", script)
    database = re.search(r"CREATE DATABASE (\w+) OWNER (\w+);", script)
    assert role is not None, script
    assert database is not None, script
    owner, options = role.group(1), role.group(2).split()
    assert database.group(2) == owner
    assert {"LOGIN", "CREATEROLE"} <= set(options)
    assert not {"SUPERUSER", "BYPASSRLS", "CREATEDB", "REPLICATION"} & set(options)
    assert services["db"]["environment"]["POSTGRES_USER"] != owner
    for service in ("migrate", "api"):
        url = services[service]["environment"]["TASKTRAIL_DATABASE_URL"]
        assert url.endswith(f"@db:5432/{database.group(1)}"), url
    migrate_url = services["migrate"]["environment"]["TASKTRAIL_DATABASE_URL"]
    assert migrate_url.startswith(f"postgresql://{owner}:")


@pytest.mark.parametrize("service", ["migrate", "api"])
def test_the_service_reaches_the_db_service_and_takes_its_secret_from_the_environment(
    service: str,
) -> None:
    """TASKTRAIL_DATABASE_URL names the db service: migrate connects as the tables' owner, the
    api as the login role migrate makes for it (never the owner), neither as the cluster's
    superuser; the secret and the passwords come from the environment, and compose refuses to
    start without them."""
    services = compose()["services"]
    environment = services[service]["environment"]
    db = services["db"]["environment"]
    url = environment["TASKTRAIL_DATABASE_URL"]
    match = re.fullmatch(r"postgresql://(\w+):(\$\{\w+:\?[^}]*\})@db:5432/\w+", url)
    assert match is not None, url
    user, password = match.groups()
    assert user != db["POSTGRES_USER"]  # nothing of tasktrail connects as the superuser
    if service == "migrate":
        assert password.startswith("${TASKTRAIL_OWNER_PASSWORD:?")
        assert db["TASKTRAIL_OWNER_PASSWORD"] == password  # the init script sets it
        assert environment["TASKTRAIL_SERVICE_PASSWORD"].startswith(
            "${TASKTRAIL_SERVICE_PASSWORD:?"
        )
    else:
        _, options = parse_cli(services["migrate"]["command"])
        assert user == options["service_login"] != db["POSTGRES_USER"]
        assert password.startswith("${TASKTRAIL_SERVICE_PASSWORD:?")
        assert "TASKTRAIL_OWNER_DATABASE_URL" not in environment
    assert db["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert environment["BETTER_AUTH_SECRET"].startswith("${BETTER_AUTH_SECRET:?")
