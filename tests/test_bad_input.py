"""Bad input ends with an error that names the object and says what to do, and the
database stays exactly as it was (catalog snapshot), online and in offline SQL alike.

Covered elsewhere: a table without a primary key, views / materialized views / foreign /
partitioned tables (test_audit_sql, test_ops), flagged models on SQLite (test_autogenerate)
and other dialects (test_ops), uninstall with history and no consent (test_ops).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import (
    Db,
    OpScript,
    catalog_snapshot,
    connect,
    offline_sql,
    psql_error,
    record_id,
    run_online,
)

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres, find_bin_dir


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


def dbname(db: Db) -> str:
    return str(db.conn.info.dbname)


def online_error(engine: sa.Engine, script: OpScript) -> psycopg2.Error:
    with pytest.raises(sa.exc.DBAPIError) as failed:
        run_online(engine, script)
    error = failed.value.orig
    assert isinstance(error, psycopg2.Error)
    return error


def assert_fails_alike(
    pg_server: ThrowawayPostgres,
    engine: sa.Engine,
    db: Db,
    script: OpScript,
    pgcode: str,
    message: str,
    hint: str,
) -> None:
    """``script`` fails online and as offline SQL (psql) with this error; nothing changes."""
    before = catalog_snapshot(db)
    error = online_error(engine, script)
    assert (error.pgcode, error.diag.message_primary, error.diag.message_hint) == (
        pgcode,
        message,
        hint,
    )
    assert catalog_snapshot(db) == before
    stderr = psql_error(pg_server, dbname(db), offline_sql(script))
    assert f"ERROR:  {message}\nHINT:  {hint}\n" in stderr
    assert catalog_snapshot(db) == before


def install(engine: sa.Engine) -> None:
    run_online(engine, lambda op: op.install_audit())


# --- A table that does not exist ----------------------------------------------------------

MISSING_ENABLE_HINT = (
    "Create the table before this step (op.create_table() earlier in this migration or in"
    " an earlier one), or correct the table name and schema given to op.enable_tracking()."
)
MISSING_DISABLE_HINT = (
    "Disable tracking before the table is dropped or renamed (op.disable_tracking() before"
    " op.drop_table()), or correct the table name and schema given to op.disable_tracking()."
)

MISSING = [
    ("acount", None, "acount"),  # a typo
    ("Account", None, '"Account"'),  # the case of the model's name, not the database's
    ("account", "xyz", "xyz.account"),  # a schema that does not exist
    ("x; drop table account; --", "semi;colon", '"semi;colon"."x; drop table account; --"'),
]


@pytest.mark.parametrize(("table", "schema", "shown"), MISSING)
def test_tracking_a_table_that_does_not_exist(
    pg_server: ThrowawayPostgres,
    engine: sa.Engine,
    db: Db,
    table: str,
    schema: str | None,
    shown: str,
) -> None:
    db.run('create table account (id int primary key); create schema "semi;colon"')
    install(engine)
    db.run("select audit.enable_tracking('account')")

    def enable(op: Operations) -> None:
        op.create_table("made_first", sa.Column("id", sa.Integer, primary_key=True))
        op.enable_tracking(table, schema=schema)

    def disable(op: Operations) -> None:
        op.disable_tracking("account")
        op.disable_tracking(table, schema=schema)

    assert_fails_alike(
        pg_server, engine, db, enable, "42P01",
        f"op.enable_tracking: table {shown} does not exist", MISSING_ENABLE_HINT,
    )  # fmt: skip
    assert_fails_alike(
        pg_server, engine, db, disable, "42P01",
        f"op.disable_tracking: table {shown} does not exist", MISSING_DISABLE_HINT,
    )  # fmt: skip
    # The failed migrations took nothing away: account is still tracked.
    db.run("insert into account values (1)")
    assert [row[0] for row in db.audit_rows()] == ["INSERT"]


# --- Tracking before the audit trail is installed ------------------------------------------


@pytest.mark.parametrize("state", ["never installed", "uninstalled, history kept"])
def test_tracking_before_the_audit_is_installed(
    pg_server: ThrowawayPostgres, engine: sa.Engine, db: Db, state: str
) -> None:
    db.run("create table account (id int primary key)")
    if state != "never installed":
        run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("account")))
        db.run("insert into account values (1)")
        run_online(engine, lambda op: op.uninstall_audit(keep_history=True))

    assert_fails_alike(
        pg_server, engine, db, lambda op: op.enable_tracking("account"), "42883",
        "op.enable_tracking: the audit trail is not installed in this database, so account"
        " cannot be tracked",
        "Run op.install_audit() first, in this migration or an earlier one.",
    )  # fmt: skip
    assert_fails_alike(
        pg_server, engine, db, lambda op: op.disable_tracking("account"), "42883",
        "op.disable_tracking: the audit trail is not installed in this database, so account"
        " cannot be untracked",
        "Without the audit trail no table is tracked: remove this step, or run"
        " op.install_audit() before it.",
    )  # fmt: skip


# --- Inheritance and partitions -----------------------------------------------------------

INHERITANCE = """
    create table parent (id int primary key, v text);
    create table child_b (primary key (id)) inherits (parent);
    create table "Child A" (primary key (id)) inherits (parent);
"""


def test_inheritance_parent_needs_its_children_tracked_first(
    pg_server: ThrowawayPostgres, engine: sa.Engine, db: Db
) -> None:
    db.run(INHERITANCE)
    install(engine)
    hint = (
        "Rows stored in a child table fire only the triggers of the child, even through the"
        " parent: track each child first (op.enable_tracking() for it before the parent)."
        " Each table records its rows under its own name."
    )
    assert_fails_alike(
        pg_server, engine, db, lambda op: op.enable_tracking("parent"), "0A000",
        'op.enable_tracking: table parent has inheritance children that are not tracked:'
        ' "Child A", child_b',
        hint,
    )  # fmt: skip
    run_online(engine, lambda op: op.enable_tracking("Child A"))
    assert_fails_alike(
        pg_server, engine, db, lambda op: op.enable_tracking("parent"), "0A000",
        "op.enable_tracking: table parent has inheritance children that are not tracked:"
        " child_b",
        hint,
    )  # fmt: skip

    # The way the hint gives: children first. Then every row is audited once, under the
    # name of the table that stores it, whichever table the statement names.
    run_online(engine, lambda op: (op.enable_tracking("child_b"), op.enable_tracking("parent")))
    db.run(
        "insert into parent values (1, 'p'); insert into child_b values (2, 'c');"
        "update parent set v = 'u'; delete from parent where id = 2; truncate parent"
    )
    parent, child = db.oid("parent"), db.oid("child_b")
    p, c = record_id(parent, "1"), record_id(child, "2")
    assert [row[:3] + row[5:] for row in db.audit_rows()] == [
        ("INSERT", p, None, "parent", {"id": 1, "v": "p"}, None),
        ("INSERT", c, None, "child_b", {"id": 2, "v": "c"}, None),
        ("UPDATE", p, p, "parent", {"id": 1, "v": "u"}, {"id": 1, "v": "p"}),
        ("UPDATE", c, c, "child_b", {"id": 2, "v": "u"}, {"id": 2, "v": "c"}),
        ("DELETE", None, c, "child_b", None, {"id": 2, "v": "u"}),
        ("TRUNCATE", None, None, "parent", None, None),
        ("TRUNCATE", None, None, "child_b", None, None),  # children in creation order
        ("TRUNCATE", None, None, "Child A", None, None),
    ]


def test_partitions_are_tracked_each_under_its_own_name(engine: sa.Engine, db: Db) -> None:
    db.run(
        "create table parted (id int primary key, v text) partition by range (id);"
        "create table parted_low partition of parted for values from (0) to (100);"
        "create table parted_high partition of parted for values from (100) to (200)"
    )
    install(engine)
    run_online(
        engine, lambda op: (op.enable_tracking("parted_low"), op.enable_tracking("parted_high"))
    )
    db.run(
        "insert into parted values (5, 'x'), (150, 'y');"
        "update parted set v = 'z' where id = 150;"
        "update parted set id = 105 where id = 5"  # moves the row to the other partition
    )
    low, high = db.oid("parted_low"), db.oid("parted_high")
    assert [row[:3] + row[5:] for row in db.audit_rows()] == [
        ("INSERT", record_id(low, "5"), None, "parted_low", {"id": 5, "v": "x"}, None),
        ("INSERT", record_id(high, "150"), None, "parted_high", {"id": 150, "v": "y"}, None),
        ("UPDATE", record_id(high, "150"), record_id(high, "150"), "parted_high",
         {"id": 150, "v": "z"}, {"id": 150, "v": "y"}),
        # A row that moves between partitions is a DELETE in one and an INSERT in the other.
        ("DELETE", None, record_id(low, "5"), "parted_low", None, {"id": 5, "v": "x"}),
        ("INSERT", record_id(high, "105"), None, "parted_high", {"id": 105, "v": "x"}, None),
    ]  # fmt: skip


# --- A server without uuid-ossp -----------------------------------------------------------


@pytest.fixture(scope="module")
def server_without_uuid_ossp() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL installation whose extension directory lacks uuid-ossp.

    The server's own binaries are copied into a temporary tree laid out like the
    distribution's (PostgreSQL finds its share directory relative to its executable); the
    share directory links every file of the real one except the uuid-ossp extension files,
    as on a server installed without its contrib package. No system file is touched.
    """
    real_bin = find_bin_dir()
    real_share = Path(_pg_config(real_bin, "--sharedir"))
    real_lib = Path(_pg_config(real_bin, "--pkglibdir"))
    common = Path(os.path.commonpath([real_bin, real_share, real_lib]))
    root = Path(tempfile.mkdtemp(prefix="hyper_audit_no_uuid_ossp_"))
    try:
        bin_dir = root / real_bin.relative_to(common)
        bin_dir.mkdir(parents=True)
        for exe in ("postgres", "initdb", "pg_ctl"):
            shutil.copy2(real_bin / exe, bin_dir / exe)
        lib_dir = root / real_lib.relative_to(common)
        if not lib_dir.exists():
            lib_dir.parent.mkdir(parents=True, exist_ok=True)
            lib_dir.symlink_to(real_lib)
        share = root / real_share.relative_to(common)
        share.mkdir(parents=True)
        for entry in real_share.iterdir():
            if entry.name != "extension":
                (share / entry.name).symlink_to(entry)
                continue
            (share / "extension").mkdir()
            for file in entry.iterdir():
                if not file.name.startswith("uuid-ossp"):
                    (share / "extension" / file.name).symlink_to(file)
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        with ThrowawayPostgres(bin_dir=bin_dir) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg_config(bin_dir: Path, option: str) -> str:
    done = subprocess.run(
        [str(bin_dir / "pg_config"), option], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.pg
def test_install_on_a_server_without_uuid_ossp(server_without_uuid_ossp: ThrowawayPostgres) -> None:
    server = server_without_uuid_ossp
    done = server.psql("postgres", "-c", "create database app")
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(server.url("app"))
    try:
        with connect(server.url("app")) as db:
            assert (
                db.one("select count(*) from pg_available_extensions where name = 'uuid-ossp'") == 0
            )
            assert db.one("select count(*) from pg_available_extensions") > 0
            assert_fails_alike(
                server, engine, db, lambda op: op.install_audit(), "0A000",
                'install_audit: the PostgreSQL extension "uuid-ossp" is not available on this'
                " server",
                "Install the PostgreSQL contrib package for this server version (Debian/Ubuntu:"
                " postgresql-contrib), then run the migration again.",
            )  # fmt: skip
            assert db.one("select to_regnamespace('audit')") is None
    finally:
        engine.dispose()
