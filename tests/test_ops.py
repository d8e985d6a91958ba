"""The Alembic operations online: install/uninstall life cycle, tracking, names, drivers.

Offline mode has its own file (test_offline.py); this one also holds the static checks of
the SQL files and the error on other dialects, which need no server.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from audit_helpers import (
    AWKWARD_NAMES,
    Db,
    OpScript,
    apply_sql,
    awkward_oid,
    catalog_snapshot,
    connect,
    create_awkward_tables,
    extra_database,
    record_id,
    run_online,
    write_awkward_rows,
)
from sqlalchemy.ext.asyncio import create_async_engine

from hyper_audit_alembic import sql as audit_sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.migration import ops as audit_ops


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


def install(op: Operations) -> None:
    op.install_audit()


# --- Tracking through the operations ---------------------------------------------------------


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg", "asyncpg"])
def test_tracking_awkward_names_online(
    pg_server: ThrowawayPostgres, db_url: str, db: Db, driver: str
) -> None:
    create_awkward_tables(db)

    def enable(op: Operations) -> None:
        op.install_audit()
        for schema, table in AWKWARD_NAMES:
            op.enable_tracking(table, schema=schema)

    def disable(op: Operations) -> None:
        for schema, table in AWKWARD_NAMES:
            op.disable_tracking(table, schema=schema)

    url = pg_server.url(sa.engine.make_url(db_url).database or "", driver=driver)
    for script in (enable, disable):
        if driver == "asyncpg":
            asyncio.run(_run_async(url, script))
        else:
            engine = sa.create_engine(url)
            try:
                with engine.begin() as connection:
                    script(Operations(MigrationContext.configure(connection)))
            finally:
                engine.dispose()
        write_awkward_rows(db, script.__name__)

    expected = []
    for schema, table in AWKWARD_NAMES:
        oid = awkward_oid(db, schema, table)
        rid = record_id(oid, "1")
        row = {"id": 1, "v": "enable"}
        expected += [
            ("INSERT", rid, None, oid, schema or "public", table, row, None),
            ("DELETE", None, rid, oid, schema or "public", table, None, row),
        ]
    assert db.audit_rows() == expected


async def _run_async(url: str, script: OpScript) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: script(Operations(MigrationContext.configure(sync)))
            )
    finally:
        await engine.dispose()


def test_enable_tracking_op_is_idempotent(engine: sa.Engine, db: Db) -> None:
    db.run("create table account (id int primary key, name text)")

    def enable_twice(op: Operations) -> None:
        op.install_audit()
        op.enable_tracking("account")
        op.enable_tracking("account", schema="public")

    run_online(engine, enable_twice)
    snapshot = catalog_snapshot(db)
    run_online(engine, enable_twice)
    assert catalog_snapshot(db) == snapshot
    db.run("insert into account values (1, 'a')")
    assert [row[0] for row in db.audit_rows()] == ["INSERT"]


def test_disable_tracking_op_is_idempotent(engine: sa.Engine, db: Db) -> None:
    db.run("create table account (id int primary key, name text)")
    run_online(engine, install)
    run_online(engine, lambda op: op.enable_tracking("account"))
    assert run_online(engine, lambda op: op.disable_tracking("account")) == []
    assert run_online(engine, lambda op: op.disable_tracking("account")) == [
        "NOTICE:  audit.disable_tracking: public.account was not tracked"
    ]
    db.run("insert into account values (1, 'a')")
    assert db.audit_rows() == []


def test_enable_tracking_op_errors(engine: sa.Engine, db: Db) -> None:
    db.run("create table nokey (v text)")
    run_online(engine, install)
    with pytest.raises(sa.exc.DBAPIError) as missing:
        run_online(engine, lambda op: op.enable_tracking("Account", schema="xyz"))
    assert missing.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        'op.enable_tracking: table xyz."Account" does not exist'
    )
    assert missing.value.orig.pgcode == "42P01"  # type: ignore[union-attr]
    with pytest.raises(sa.exc.DBAPIError) as nokey:
        run_online(engine, lambda op: op.enable_tracking("nokey"))
    assert nokey.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        "audit.enable_tracking: table public.nokey has no primary key"
    )
    assert nokey.value.orig.pgcode == "42P16"  # type: ignore[union-attr]


# --- install_audit / uninstall_audit -----------------------------------------------------------


def tracked_account(engine: sa.Engine, db: Db) -> int:
    """Audit installed, public.account tracked, two audit rows; returns the table oid."""
    db.run("create table account (id int primary key, name text)")

    def setup(op: Operations) -> None:
        op.install_audit()
        op.enable_tracking("account")

    run_online(engine, setup)
    db.run("insert into account values (1, 'a'); update account set name = 'b'")
    return db.oid("account")


def functions_in_audit(db: Db) -> list[str]:
    return [
        name
        for (name,) in db.rows(
            "select p.oid::regprocedure::text from pg_proc p"
            " where p.pronamespace = to_regnamespace('audit') order by 1"
        )
    ]


def test_install_audit_over_an_install_keeps_history(engine: sa.Engine, db: Db) -> None:
    oid = tracked_account(engine, db)
    history = db.audit_rows()
    snapshot = catalog_snapshot(db)
    run_online(engine, install)
    assert catalog_snapshot(db) == snapshot
    assert db.audit_rows() == history
    assert db.rows("select version from audit.schema_version") == [(audit_sql.SCHEMA_VERSION,)]
    db.run("delete from account")
    assert db.audit_rows()[-1][:3] == ("DELETE", None, record_id(oid, "1"))


def test_uninstall_audit_refuses_while_history_exists(engine: sa.Engine, db: Db) -> None:
    tracked_account(engine, db)
    history = db.audit_rows()
    snapshot = catalog_snapshot(db)
    # Autocommit: nothing may have run before the refusal, even without a transaction.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        operations = Operations(MigrationContext.configure(connection))
        with pytest.raises(sa.exc.DBAPIError) as refused:
            operations.uninstall_audit()
    error = refused.value.orig
    assert error.pgcode == "2BP01"  # type: ignore[union-attr]
    assert error.diag.message_primary == (  # type: ignore[union-attr]
        "uninstall_audit: audit.record_version holds recorded history; refusing to destroy it"
    )
    assert error.diag.message_hint == (  # type: ignore[union-attr]
        "Use op.uninstall_audit(keep_history=True) to remove the audit triggers and functions"
        " and keep every recorded row, or op.uninstall_audit(drop_history=True) to delete the"
        " history as well."
    )
    assert catalog_snapshot(db) == snapshot
    assert db.audit_rows() == history


def test_uninstall_keep_history_then_install_again(engine: sa.Engine, db: Db) -> None:
    oid = tracked_account(engine, db)
    history = db.audit_rows()
    run_online(engine, lambda op: op.uninstall_audit(keep_history=True))
    assert db.audit_rows() == history
    assert functions_in_audit(db) == []
    assert db.rows("select tgname from pg_trigger where not tgisinternal") == []
    assert db.rows("select evtname from pg_event_trigger") == []
    assert db.one("select to_regclass('audit.schema_version')") is None
    db.run("insert into account values (2, 'untracked')")
    assert db.audit_rows() == history

    run_online(engine, install)
    assert db.audit_rows() == history
    assert db.rows("select version from audit.schema_version") == [(audit_sql.SCHEMA_VERSION,)]
    run_online(engine, lambda op: op.enable_tracking("account"))
    db.run("delete from account where id = 1")
    assert db.audit_rows() == [
        *history,
        ("DELETE", None, record_id(oid, "1"), oid, "public", "account", None,
         {"id": 1, "name": "b"}),
    ]  # fmt: skip
    # The ids keep counting where they stopped.
    assert [i for (i,) in db.rows("select id from audit.record_version order by id")] == [1, 2, 3]


def test_uninstall_drop_history_removes_the_schema(engine: sa.Engine, db: Db) -> None:
    tracked_account(engine, db)
    run_online(engine, lambda op: op.uninstall_audit(drop_history=True))
    assert db.one("select to_regnamespace('audit')") is None
    assert db.rows("select tgname from pg_trigger where not tgisinternal") == []
    assert db.rows("select evtname from pg_event_trigger") == []
    db.run("insert into account values (2, 'c')")  # the table works untracked


def test_uninstall_of_an_empty_audit_drops_everything(engine: sa.Engine, db: Db) -> None:
    # uuid-ossp is left installed (other code may use it): create it first to compare.
    db.run('create extension "uuid-ossp"; create table account (id int primary key)')
    before = catalog_snapshot(db)

    def install_and_track(op: Operations) -> None:
        op.install_audit()
        op.enable_tracking("account")

    run_online(engine, install_and_track)
    assert catalog_snapshot(db) != before
    run_online(engine, lambda op: op.uninstall_audit())
    assert catalog_snapshot(db) == before


def test_uninstall_leaves_uuid_ossp_installed(engine: sa.Engine, db: Db) -> None:
    run_online(engine, install)
    run_online(engine, lambda op: op.uninstall_audit())
    assert db.one("select to_regnamespace('audit')") is None
    assert db.rows("select extname::text from pg_extension order by 1") == [
        ("plpgsql",),
        ("uuid-ossp",),
    ]


def test_uninstall_keeps_foreign_objects_in_the_schema(engine: sa.Engine, db: Db) -> None:
    run_online(engine, install)
    db.run("create table audit.mine (id int)")
    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(engine, lambda op: op.uninstall_audit(drop_history=True))
    assert refused.value.orig.pgcode == "2BP01"  # type: ignore[union-attr]
    assert db.one("select to_regclass('audit.mine')::text") == "audit.mine"
    assert db.one("select to_regclass('audit.record_version')::text") == "audit.record_version"


def test_uninstall_choices_are_exclusive() -> None:
    with pytest.raises(audit_ops.AuditOperationError) as both:
        audit_ops.UninstallAuditOp(keep_history=True, drop_history=True)
    assert str(both.value) == (
        "uninstall_audit: choose keep_history=True or drop_history=True, not both"
    )


def test_install_as_a_database_owner_without_superuser(pg_server: ThrowawayPostgres) -> None:
    """Without a superuser there is no event trigger: a warning says so, and calling
    op.enable_tracking() again after a key change re-syncs the trigger, as it advises."""
    owner = f"owner_{uuid.uuid4().hex[:10]}"
    apply_sql(pg_server, "postgres", f"create role {owner} login")
    url = sa.engine.make_url(pg_server.url(owner)).set(username=owner).render_as_string()
    try:
        with extra_database(pg_server, owner):
            apply_sql(pg_server, "postgres", f"alter database {owner} owner to {owner}")
            engine = sa.create_engine(url)
            try:
                with connect(url) as db:
                    db.run("create table account (id int primary key, name text)")
                    notices = run_online(
                        engine, lambda op: (op.install_audit(), op.enable_tracking("account"))
                    )
                    assert notices[0] == (
                        "WARNING:  install_audit: not a superuser, so primary-key changes of"
                        " tracked tables are not followed automatically\nHINT:  After changing"
                        " the primary key of a tracked table, call op.enable_tracking() for it"
                        " again."
                    )
                    assert db.rows("select evtname from pg_event_trigger") == []
                    oid = db.oid("account")
                    db.run("alter table account rename column id to account_id")
                    run_online(engine, lambda op: op.enable_tracking("account"))
                    db.run("insert into account values (1, 'a')")
                    assert db.audit_rows()[-1][:2] == ("INSERT", record_id(oid, "1"))
                    run_online(engine, lambda op: op.uninstall_audit(drop_history=True))
                    assert db.one("select to_regnamespace('audit')") is None
            finally:
                engine.dispose()
    finally:
        apply_sql(pg_server, "postgres", f"drop role {owner}")


# --- reverse() and diff tuples --------------------------------------------------------------


def test_reverse_and_diff_tuples() -> None:
    install_op = audit_ops.InstallAuditOp()
    assert install_op.to_diff_tuple() == ("install_audit",)
    back = install_op.reverse()
    assert isinstance(back, audit_ops.UninstallAuditOp)
    assert (back.keep_history, back.drop_history) == (True, False)
    assert isinstance(back.reverse(), audit_ops.InstallAuditOp)
    assert audit_ops.UninstallAuditOp(drop_history=True).to_diff_tuple() == (
        "uninstall_audit",
        False,
        True,
    )

    enable = audit_ops.EnableTrackingOp("Members", schema="xyz")
    assert enable.to_diff_tuple() == ("enable_tracking", "xyz", "Members")
    disable = enable.reverse()
    assert isinstance(disable, audit_ops.DisableTrackingOp)
    assert (disable.table_name, disable.schema) == ("Members", "xyz")
    assert disable.to_diff_tuple() == ("disable_tracking", "xyz", "Members")
    again = disable.reverse()
    assert isinstance(again, audit_ops.EnableTrackingOp)
    assert (again.table_name, again.schema) == ("Members", "xyz")


# --- Static checks: no server needed ---------------------------------------------------------

SQL_ROOT = Path(audit_sql.__file__).parent
SQL_FILES = sorted(
    str(path.relative_to(SQL_ROOT).with_suffix("")) for path in SQL_ROOT.rglob("*.sql")
)


def test_sql_files_are_known() -> None:
    functions = [f"functions/{name}" for name in sorted(audit_sql.FUNCTIONS)]
    assert SQL_FILES == [
        "adopt_finish",
        "adopt_prepare",
        "citus_distribute",
        "citus_remove",
        "drop_history",
        *functions,
        "indexes",
        "partitioned",
        "partitioned_check",
        "partitioned_convert",
        "partitioned_refresh",
        "partitioned_settings",
        "refuse_if_history",
        "released/1",
        "released/2",
        "released/3",
        "released/4",
        "released/5",
        "remove_functions",
        "retention_to_policy",
        "snapshot_table",
        "steps/1",
        "steps/2",
        "steps/2.down",
        "steps/3",
        "steps/3.down",
        "steps/4",
        "steps/4.down",
        "steps/5",
        "steps/5.down",
        "steps/6",
        "steps/6.down",
        "timescale_plan",
        "timescale_policy",
        "track_table",
        "untrack_table",
        "version_guard",
    ]


@pytest.mark.parametrize("name", SQL_FILES)
def test_sql_statements_survive_offline_mode_and_text(name: str) -> None:
    statements = audit_sql.statements(name)
    assert statements
    for statement in statements:
        assert "%" not in statement, statement
        assert not statement.rstrip().endswith(";"), statement
        clause = sa.text(statement)
        assert clause._bindparams == {}, statement
        assert clause.compile().params == {}, statement


OPERATIONS = {
    "install_audit": lambda op: op.install_audit(),
    "uninstall_audit": lambda op: op.uninstall_audit(),
    "uninstall_audit_keep": lambda op: op.uninstall_audit(keep_history=True),
    "enable_tracking": lambda op: op.enable_tracking("account"),
    "disable_tracking": lambda op: op.disable_tracking("account", schema="xyz"),
}


@pytest.mark.parametrize("as_sql", [True, False], ids=["offline", "online"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_other_dialects_are_refused(operation: str, as_sql: bool) -> None:
    buffer = io.StringIO()
    if as_sql:
        context = MigrationContext.configure(
            dialect_name="sqlite", opts={"as_sql": True, "output_buffer": buffer}
        )
        with pytest.raises(audit_ops.AuditOperationError) as refused:
            OPERATIONS[operation](Operations(context))
    else:
        engine = sa.create_engine("sqlite://")
        with (
            engine.connect() as connection,
            pytest.raises(audit_ops.AuditOperationError) as refused,
        ):
            OPERATIONS[operation](Operations(MigrationContext.configure(connection)))
    assert str(refused.value) == (
        "hyper_audit: the audit trail needs PostgreSQL, but this migration runs on 'sqlite'."
        " Run it against PostgreSQL, or remove the audit operations from it."
    )
    assert buffer.getvalue() == ""


def test_record_ids_match_python_for_every_tracked_table(engine: sa.Engine, db: Db) -> None:
    # A quick cross-check of the Python helper the docs promise, on a uuid key.
    db.run("create table docs (id uuid primary key, body text)")
    run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("docs")))
    key = uuid.UUID("00000000-0000-4000-8000-000000000001")
    db.run("insert into docs values (%s, 'x')", [str(key)])
    assert db.audit_rows()[0][1] == record_id(db.oid("docs"), str(key))
