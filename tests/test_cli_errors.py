"""Every CLI failure is one line on stderr with exit code 1; the history API checks its input.

Run as a user runs them: ``python -m hyper_audit_alembic`` in a fresh interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import run_online
from sqlalchemy.orm import Session

from hyper_audit_alembic import context_history, transaction_history
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

EXPECTED_URL = "expected postgresql://user:password@host:port/dbname"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).parent,
        timeout=120,
    )


def assert_error(done: subprocess.CompletedProcess[str], line: str) -> None:
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"error: {line}\n")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when we return: nobody listens


@pytest.mark.pg
@pytest.mark.parametrize("command", ["demo", "history"])
def test_a_bad_url_is_one_line(command: str) -> None:
    tail = ["account", "1"] if command == "history" else []
    assert_error(cli(command, "--url", "not a url", *tail), f"not a database URL: {EXPECTED_URL}")
    assert_error(cli(command, "--url", "mysqlx:/ /h", *tail), f"not a database URL: {EXPECTED_URL}")


@pytest.mark.pg
@pytest.mark.parametrize("command", ["demo", "history"])
def test_an_unreachable_server_is_one_line(command: str) -> None:
    port = closed_port()
    tail = ["account", "1"] if command == "history" else []
    assert_error(
        cli(command, "--url", f"postgresql://postgres@127.0.0.1:{port}/app", *tail),
        f"cannot reach a PostgreSQL server at 127.0.0.1:{port} (Connection refused): "
        "start the server, or fix the host and port in the URL",
    )


@pytest.mark.parametrize("command", ["demo", "history"])
def test_a_missing_database_is_one_line(command: str, pg_server: ThrowawayPostgres) -> None:
    tail = ["account", "1"] if command == "history" else []
    assert_error(
        cli(command, "--url", pg_server.url("nosuchdb"), *tail),
        f'database "nosuchdb" does not exist on 127.0.0.1:{pg_server.port}: '
        "create it (createdb nosuchdb) or fix the URL",
    )


def test_debug_shows_the_traceback(pg_server: ThrowawayPostgres) -> None:
    for args in (
        ["--debug", "history", "--url", pg_server.url("nosuchdb"), "account", "1"],
        ["history", "--debug", "--url", pg_server.url("nosuchdb"), "account", "1"],
    ):
        done = cli(*args)
        assert done.returncode == 1
        assert "Traceback (most recent call last)" in done.stderr
        assert 'database "nosuchdb" does not exist' in done.stderr


@pytest.mark.pg
def test_a_url_of_another_database_is_refused() -> None:
    for command, tail in (("demo", []), ("history", ["account", "1"])):
        assert_error(
            cli(command, "--url", "sqlite:///app.db", *tail),
            "hyper_audit_alembic needs PostgreSQL, and this is a sqlite URL: " + EXPECTED_URL,
        )


@pytest.mark.pg
def test_a_usage_error_is_one_line() -> None:
    done = cli("history", "account")
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        "error: the following arguments are required: key "
        "(see hyper-audit-alembic history --help)\n",
    )


@pytest.mark.pg
def test_history_without_a_url_says_how_to_give_one() -> None:
    assert_error(
        cli("history", "account", "1"),
        "no database given: pass --url postgresql://user:password@host/dbname or set DATABASE_URL",
    )


def _install(engine: sa.Engine, *tracked: str) -> None:
    def script(op: Operations) -> None:
        op.install_audit()  # type: ignore[attr-defined]
        for table in tracked:
            op.enable_tracking(table)  # type: ignore[attr-defined]

    run_online(engine, script)


def test_history_names_a_missing_or_untracked_table(db_url: str, engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("create table account (id int primary key, name text)")
        connection.exec_driver_sql("create schema xyz")
        connection.exec_driver_sql('create table xyz."Order" (id int primary key)')
        connection.exec_driver_sql("create table note (id int primary key)")
    # No audit trail at all: a missing table is still "no such table".
    assert_error(cli("history", "--url", db_url, "nosuch", "1"), "no such table: nosuch")
    assert_error(
        cli("history", "--url", db_url, "account", "1"),
        f"no audit trail in 127.0.0.1:{engine.url.port}/{engine.url.database}: install it "
        "(op.install_audit() in a migration), then track the table",
    )
    _install(engine, "note")
    assert_error(cli("history", "--url", db_url, "nosuch", "1"), "no such table: nosuch")
    assert_error(cli("history", "--url", db_url, "--json", "nosuch", "1"), "no such table: nosuch")
    assert_error(
        cli("history", "--url", db_url, "account", "1"),
        "table account is not tracked (track it with op.enable_tracking('account') in a "
        "migration or __audited__ = True on its model)",
    )
    assert_error(
        cli("history", "--url", db_url, 'xyz."Order"', "1"),
        "table xyz.\"Order\" is not tracked (track it with op.enable_tracking('Order', "
        "schema='xyz') in a migration or __audited__ = True on its model)",
    )
    # Tracked, but this record has no rows: not an error about the table.
    done = cli("history", "--url", db_url, "note", "7")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "no audit rows for note (id) = (7)\n",
    )


def test_history_of_a_table_no_longer_tracked_still_shows_its_rows(
    db_url: str, engine: sa.Engine
) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("create table account (id int primary key, name text)")
    _install(engine, "account")
    with engine.begin() as connection:
        connection.exec_driver_sql("insert into account values (1, 'Foo')")
    run_online(engine, lambda op: op.disable_tracking("account"))  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.exec_driver_sql("update account set name = 'Bar' where id = 1")
    done = cli("history", "--url", db_url, "account", "1")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "account (id) = (1): 1 change"
    assert lines[2].endswith('INSERT  postgres           id=1, name="Foo"')
    # A key with no rows, in a table that has rows: the plain "no audit rows".
    done = cli("history", "--url", db_url, "account", "2")
    assert (done.returncode, done.stderr) == (1, "no audit rows for account (id) = (2)\n")


# -- the Python API: bad arguments fail before the database is touched ------------------


@pytest.fixture
def unreachable_session() -> Session:
    """A session whose first query would fail: any database access shows as another error."""
    engine = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/x")
    return Session(engine)


def test_context_history_checks_its_arguments(unreachable_session: Session) -> None:
    session = unreachable_session
    cases: list[tuple[object, type[Exception], str]] = [
        (
            "notadict",
            TypeError,
            "context_history: context must be a mapping such as {'request_id': 'r-1'}, "
            "got str 'notadict'",
        ),
        (
            {},
            ValueError,
            "context_history: context is empty (it would match every audit row): pass at "
            "least one name, such as {'request_id': 'r-1'}",
        ),
        ({1: "a"}, TypeError, "context_history: context names must be strings, got int 1"),
        (
            {"request_id": object},
            TypeError,
            "context_history: context values must be JSON values (str, int, float, bool, "
            "None, lists and dicts of them): Object of type type is not JSON serializable",
        ),
    ]
    for context, kind, message in cases:
        with pytest.raises(kind) as raised:
            context_history(session, context)  # type: ignore[arg-type]
        assert str(raised.value) == message
    with pytest.raises(TypeError) as raised:
        context_history(session, {"request_id": "r-1"}, since="2024-01-01")  # type: ignore[arg-type]
    assert str(raised.value) == "context_history: since must be a datetime, got str '2024-01-01'"


def test_transaction_history_checks_its_argument(unreachable_session: Session) -> None:
    for value, kind, message in [
        (
            "abc",
            TypeError,
            "transaction_history: transaction_id must be an int (a RecordVersion's "
            "transaction_id), got str 'abc'",
        ),
        (
            True,
            TypeError,
            "transaction_history: transaction_id must be an int (a RecordVersion's "
            "transaction_id), got bool True",
        ),
        (-1, ValueError, "transaction_history: transaction_id must be 0 or more, got -1"),
    ]:
        with pytest.raises(kind) as raised:
            transaction_history(unreachable_session, value)  # type: ignore[arg-type]
        assert str(raised.value) == message
    # A valid argument does reach the database (the session's is unreachable).
    with pytest.raises(sa.exc.OperationalError) as unreachable:
        transaction_history(unreachable_session, 1)
    port = unreachable_session.get_bind().url.port
    assert str(unreachable.value.orig).splitlines()[0] == (
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
