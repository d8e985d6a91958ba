"""``python -m hyper_audit_alembic demo``: the README's first command, run as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from audit_helpers import snapshot_of

from hyper_audit_alembic.devtools.throwaway_postgres import INSTALL_HINT, ThrowawayPostgres

# The demo runs in a fresh interpreter and starts its own server (or says it cannot).
pytestmark = pytest.mark.pg

HISTORY_HEADER = "  id | op       | table         | record   | record (new)"
HISTORY = [
    ("INSERT", "account"),
    ("UPDATE", "account"),
    ("DELETE", "account"),
    ("TRUNCATE", "account"),
    ("INSERT", "access_token"),
    ("INSERT", "refresh_token"),
    ("UPDATE", "access_token"),
    ("UPDATE", "refresh_token"),
]


def run_demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", "demo", *args],
        capture_output=True,
        text=True,
        env={**environment, **env},
        cwd=Path(__file__).parent,
        timeout=300,
    )


def assert_demo_output(stdout: str) -> None:
    lines = stdout.splitlines()
    upgrade = lines[lines.index("def upgrade() -> None:") :]
    assert upgrade[3] == "    op.install_audit()"
    for table in ("account", "access_token", "refresh_token"):
        assert f"    op.enable_tracking('{table}')" in upgrade
    assert "    op.enable_tracking('note')" not in upgrade

    start = next(n for n, line in enumerate(lines) if line.startswith(HISTORY_HEADER))
    rows = [line.split(" | ") for line in lines[start + 2 : start + 2 + len(HISTORY)]]
    assert [(row[0].strip(), row[1].strip(), row[2].strip()) for row in rows] == [
        (str(n), op, table) for n, (op, table) in enumerate(HISTORY, start=1)
    ]
    assert lines[start + 2 + len(HISTORY)] == "  8 audit rows; superseded access tokens kept: 1"
    assert "=== alembic check" in lines
    assert lines[lines.index("=== alembic check") + 1] == "  No new upgrade operations detected."
    assert lines[-1] == "  tables dropped; audit history kept: 8 rows in audit.record_version"


def test_demo_on_a_throwaway_server() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("\n=== Starting a throwaway PostgreSQL server\n")
    assert_demo_output(done.stdout)


# The user's own tables, named like the demo's, with rows the demo must never touch.
USERS_TABLES = [
    "create table account (id int primary key, name text not null, email text)",
    "insert into account select n, 'user ' || n, n || '@example.com'"
    " from generate_series(1, 1000) n",
    "create table access_token (id int primary key, customer_id int unique, token text,"
    " expires_at timestamptz default now())",
    "insert into access_token select n, 40 + n, 'tok' || n, '2030-01-01'"
    " from generate_series(1, 5) n",
    "create table refresh_token (id int primary key,"
    " access_token_id int unique references access_token, token text)",
    "insert into refresh_token select n, n, 'ref' || n from generate_series(1, 5) n",
    "create table note (id int primary key, body text)",
    "insert into note values (1, 'keep me')",
]


def users_rows(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.exec_driver_sql(f"table {table} order by 1")]
            for table in ("account", "access_token", "refresh_token", "note")
        }


def databases(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.text("select datname from pg_database order by 1")))


def plain(url: str) -> str:
    """The URL as a user writes it: postgresql://, no driver."""
    return url.replace("postgresql+psycopg2://", "postgresql://")


def test_demo_with_url_never_touches_the_users_data(db_url: str, engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for statement in USERS_TABLES:
            connection.exec_driver_sql(statement)
    rows, catalog, dbs = users_rows(engine), snapshot_of(db_url), databases(engine)
    assert len(rows["account"]) == 1000

    done = run_demo("--url", plain(db_url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Starting a throwaway" not in done.stdout
    scratch = re.search(
        r"\(working in a scratch database (hyper_audit_demo_[0-9a-f]{8}) on ", done.stdout
    )
    assert scratch is not None, done.stdout
    assert_demo_output(done.stdout)

    assert users_rows(engine) == rows
    after = snapshot_of(db_url)
    assert after == catalog
    assert "schema_version" not in after
    assert [r for r in after["relations"] if r[1] == "alembic_version"] == []
    assert [e[0] for e in after["extensions"]] == ["plpgsql"]
    assert databases(engine) == dbs  # the scratch database is gone


def test_demo_keep_keeps_the_scratch_database_and_says_how_to_drop_it(
    db_url: str, engine: sa.Engine, pg_server: ThrowawayPostgres
) -> None:
    before = databases(engine)
    done = run_demo("--url", db_url, "--keep")
    assert done.returncode == 0, done.stdout + done.stderr
    [kept] = set(databases(engine)) - set(before)
    assert kept.startswith("hyper_audit_demo_")
    assert (
        f"\nThe demo's database {kept} stays on 127.0.0.1:{pg_server.port}; drop it with: "
        f"dropdb -h 127.0.0.1 -p {pg_server.port} -U postgres {kept}\n"
    ) in done.stdout
    kept_engine = sa.create_engine(pg_server.url(kept))
    with kept_engine.connect() as connection:
        assert connection.exec_driver_sql("select count(*) from audit.record_version").scalar() == 8
    kept_engine.dispose()
    pg_server.psql("postgres", "-c", f"drop database {kept} with (force)")


@pytest.fixture
def role_without_createdb(pg_server: ThrowawayPostgres) -> Iterator[str]:
    role = "demo_no_createdb"
    pg_server.psql("postgres", "-c", f"create role {role} login nocreatedb")
    yield role
    for name in ("demo_full", "demo_empty"):
        pg_server.psql("postgres", "-c", f"drop database if exists {name} with (force)")
    pg_server.psql("postgres", "-c", f"drop role {role}")


def test_demo_without_createdb_refuses_a_database_that_is_not_empty(
    pg_server: ThrowawayPostgres, role_without_createdb: str
) -> None:
    role = role_without_createdb
    pg_server.psql("postgres", "-c", f"create database demo_full owner {role}")
    setup = pg_server.psql(
        "demo_full",
        input=(
            "create schema app; create table app.thing (id int primary key);"
            " create table public.account (id int primary key); insert into account values (1);"
            " create extension pg_trgm;"
        ),
    )
    assert setup.returncode == 0, setup.stderr
    url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/demo_full"
    before = snapshot_of(pg_server.url("demo_full"))
    done = run_demo("--url", url)
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert done.stderr == (
        f"error: the demo needs a database of its own: role {role} may not create one "
        f"(no CREATEDB), and 127.0.0.1:{pg_server.port}/demo_full is not empty: it holds "
        "schemas app; tables app.thing, public.account; extensions pg_trgm. Pass the URL of "
        "an empty database (createdb hyper_audit_demo), or of a role that may create "
        "databases.\n"
    )
    assert snapshot_of(pg_server.url("demo_full")) == before


def test_demo_without_createdb_works_in_an_empty_database_and_clears_it(
    pg_server: ThrowawayPostgres, role_without_createdb: str
) -> None:
    role = role_without_createdb
    pg_server.psql("postgres", "-c", f"create database demo_empty owner {role}")
    before = snapshot_of(pg_server.url("demo_empty"))
    url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/demo_empty"
    done = run_demo("--url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"(working in the empty database 127.0.0.1:{pg_server.port}/demo_empty, "
        "the role may not create one)"
    ) in done.stdout
    assert_demo_output(done.stdout)
    assert snapshot_of(pg_server.url("demo_empty")) == before

    # With --keep, what stays is listed with the statements that remove it.
    done = run_demo("--url", url, "--keep")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = done.stdout.splitlines()[-1]
    assert kept == (
        f"The demo's objects stay in 127.0.0.1:{pg_server.port}/demo_empty: schemas audit; "
        'tables public.alembic_version; extensions "uuid-ossp"; remove them with: '
        "drop schema if exists audit cascade; drop table if exists public.alembic_version "
        'cascade; drop extension if exists "uuid-ossp" cascade'
    )
    statements = kept.split("remove them with: ", 1)[1]
    cleared = pg_server.psql("demo_empty", input=statements.replace("; ", ";\n") + ";")
    assert cleared.returncode == 0, cleared.stderr
    assert snapshot_of(pg_server.url("demo_empty")) == before


def test_demo_without_postgresql_says_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "no-postgres-here"
    empty.mkdir()
    done = run_demo(HYPER_AUDIT_PG_BIN=str(empty))
    assert done.returncode == 1
    assert done.stderr == (
        f"error: HYPER_AUDIT_PG_BIN={empty} holds no initdb and pg_ctl. {INSTALL_HINT}\n"
    )
    assert "apt-get install postgresql postgresql-contrib" in done.stderr
