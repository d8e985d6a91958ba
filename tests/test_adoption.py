"""Adopting an existing install of the reference design, and tables tracked by hand.

The reference (supa_audit 0.3 / hyper_audit) is built here with SQL written from the
behaviour reference (shared/design/AUDIT_BEHAVIOUR.md; the same design as
benchmarks/reference_design.sql, in schema ``audit`` with its trigger names audit_i_u_d and
audit_t): plain, as the extension ``supa_audit``, and in the shape its TimescaleDB
conversion leaves (no primary key, indexes with ``ts``; a real hypertable where the server
has TimescaleDB).

The extension: the real ``supa_audit`` files are not installed on the test servers (and a
test suite must not write into the server's share directory), so a stand-in is made: an
empty contrib extension renamed ``supa_audit`` in the catalog, given the reference's objects
with ALTER EXTENSION ... ADD and its two configuration tables, as the real script leaves
them. The membership the adoption detaches is the same.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.util import CommandError
from alembic_project import ACCOUNT_MODELS, Project, autogenerate, migration_body
from audit_helpers import (
    Db,
    apply_sql,
    catalog_snapshot,
    connect,
    extra_database,
    offline_sql,
    record_id,
    run_online,
    snapshot_of,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from timescale_helpers import fresh_database

from hyper_audit_alembic import history, sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration.ops import UNADOPT_REFUSAL, AdoptAuditOp, UnadoptAuditOp

# The reference design as the original installs it: benchmarks/reference_design.sql (written
# from the behaviour reference, AUDIT_BEHAVIOUR.md) in schema audit instead of audit_reference.
REFERENCE = (
    (Path(__file__).resolve().parents[1] / "benchmarks" / "reference_design.sql")
    .read_text(encoding="utf-8")
    .replace("audit_reference", "audit")
)

# What hyper_audit's TimescaleDB conversion does to the table; create_hypertable where the
# server has TimescaleDB (the database has the extension created first).
TIMESCALE_SHAPE = """
alter table audit.record_version drop constraint if exists record_version_pkey;
drop index if exists audit.record_version_record_id;
create index record_version_record_id on audit.record_version (record_id, ts)
    where record_id is not null;
drop index if exists audit.record_version_old_record_id;
create index record_version_old_record_id on audit.record_version (old_record_id, ts)
    where old_record_id is not null;
drop index if exists audit.record_version_ts;
drop index if exists audit.record_version_table_oid;
create index record_version_table_oid on audit.record_version (table_oid, ts);
"""

# The stand-in for `create extension supa_audit` (see the module documentation).
AS_EXTENSION = """
create extension tsm_system_rows;
alter extension tsm_system_rows drop function system_rows(internal);
drop function system_rows(internal);
update pg_catalog.pg_extension set extname = 'supa_audit', extversion = '0.3.0'
    where extname = 'tsm_system_rows';
alter extension supa_audit add schema audit;
alter extension supa_audit add type audit.operation;
alter extension supa_audit add table audit.record_version;
alter extension supa_audit add sequence audit.record_version_id_seq;
alter extension supa_audit add function audit.primary_key_columns(oid);
alter extension supa_audit add function audit.to_record_id(oid, text[], jsonb);
alter extension supa_audit add function audit.insert_update_delete_trigger();
alter extension supa_audit add function audit.truncate_trigger();
alter extension supa_audit add function audit.enable_tracking(regclass);
alter extension supa_audit add function audit.disable_tracking(regclass);
update pg_catalog.pg_extension
    set extconfig = array[
            'audit.record_version'::regclass, 'audit.record_version_id_seq'::regclass
        ]::oid[],
        extcondition = array['', '']
    where extname = 'supa_audit';
"""

TABLES = """
create table account (id int primary key, name varchar not null);
create schema shop;
create table shop."Line Item" (
    order_id int, line int, what varchar, primary key (order_id, line)
);
"""

VARIANTS = {
    "plain": REFERENCE,
    "extension": REFERENCE + AS_EXTENSION,
    "timescale-shaped": REFERENCE + TIMESCALE_SHAPE,
}

ACCOUNT = ("public", "account")
LINE = ("shop", "Line Item")

REFERENCE_HISTORY = [
    ("INSERT", (*ACCOUNT, "1"), None, *ACCOUNT, {"id": 1, "name": "Foo Barsworth"}, None),
    (
        "UPDATE",
        (*ACCOUNT, "1"),
        (*ACCOUNT, "1"),
        *ACCOUNT,
        {"id": 1, "name": "Foo Barsworth III"},
        {"id": 1, "name": "Foo Barsworth"},
    ),
    ("INSERT", (*LINE, "10", "1"), None, *LINE, {"order_id": 10, "line": 1, "what": "pen"}, None),
    ("TRUNCATE", None, None, *LINE, None, None),
]

LATER_HISTORY = [
    (
        "UPDATE",
        (*ACCOUNT, "1"),
        (*ACCOUNT, "1"),
        *ACCOUNT,
        {"id": 1, "name": "After"},
        {"id": 1, "name": "Foo Barsworth III"},
    ),
    ("INSERT", (*LINE, "10", "2"), None, *LINE, {"order_id": 10, "line": 2, "what": "ink"}, None),
]

# Our triggers on a table tracked statement by statement.
OUR_TRIGGERS = [
    "audit_delete",
    "audit_insert",
    "audit_key_change",
    "audit_truncate",
    "audit_update",
]


def build_reference(db: Db, variant: str) -> None:
    """The reference install, tracking two tables, with history written by its triggers."""
    db.run(VARIANTS.get(variant) or variant)
    db.run(TABLES)
    db.run("select audit.enable_tracking('public.account'::regclass)")
    db.run("""select audit.enable_tracking('shop."Line Item"'::regclass)""")
    db.run("insert into account values (1, 'Foo Barsworth')")
    db.run("update account set name = 'Foo Barsworth III' where id = 1")
    db.run("""insert into shop."Line Item" values (10, 1, 'pen')""")
    db.run("""truncate shop."Line Item\"""")


def write_later(db: Db) -> None:
    db.run("update account set name = 'After' where id = 1")
    db.run("""insert into shop."Line Item" values (10, 2, 'ink')""")


def triggers(db: Db, table: str) -> list[str]:
    return [
        name
        for (name,) in db.rows(
            "select tgname::text from pg_trigger where tgrelid = %s::regclass and not tgisinternal"
            " order by 1",
            [table],
        )
    ]


def reference_objects(db: Db) -> list[Any]:
    """What is left of the reference: its trigger functions and its extension."""
    return db.rows(
        "select to_regprocedure('audit.insert_update_delete_trigger()')::text,"
        " to_regprocedure('audit.truncate_trigger()')::text,"
        " (select extname::text from pg_extension where extname = 'supa_audit')"
    )


def assert_adopted(db: Db, before: list[tuple[Any, ...]], ids: list[int]) -> None:
    """Rows and ids kept; each table tracked by our triggers once; the reference gone."""
    assert db.audit_rows() == before
    assert [i for (i,) in db.rows("select id from audit.record_version order by id")] == ids
    assert reference_objects(db) == [(None, None, None)]
    assert triggers(db, "account") == OUR_TRIGGERS
    assert triggers(db, 'shop."Line Item"') == OUR_TRIGGERS
    assert db.one("select version from audit.schema_version") == sql.SCHEMA_VERSION
    # The next writes are recorded once each, by our triggers, under the same record ids.
    write_later(db)
    assert db.normalized_audit_rows() == REFERENCE_HISTORY + LATER_HISTORY
    assert db.rows(
        "select actor from audit.record_version where id > %s order by id", [max(ids)]
    ) == [("postgres",), ("postgres",)]


def account_history(engine: sa.Engine) -> list[tuple[str, uuid.UUID | None, uuid.UUID | None]]:
    with Session(engine) as session:
        return [
            (version.op.value, version.record_id, version.old_record_id)
            for version in history(session, "account", 1)
        ]


@pytest.fixture(scope="module")
def fresh_snapshot(pg_server: ThrowawayPostgres) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """A fresh install tracking the same tables by hand, as the reference did."""
    with extra_database(pg_server, "adoption_fresh_install") as name:
        url = pg_server.url(name)
        engine = sa.create_engine(url)
        try:
            run_online(engine, lambda op: op.install_audit())
            with connect(url) as db:
                db.run(TABLES)
                db.run("select audit.enable_tracking('public.account'::regclass)")
                db.run("""select audit.enable_tracking('shop."Line Item"'::regclass)""")
            yield snapshot_of(url)
        finally:
            engine.dispose()


def models(*audited: str) -> sa.MetaData:
    """account and shop."Line Item" as models, flagged as listed."""

    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "account"
        __audited__ = "account" in audited

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class LineItem(Base):
        __tablename__ = "Line Item"
        __table_args__ = {"schema": "shop"}
        __audited__ = "Line Item" in audited

        order_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        line: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        what: Mapped[str | None]

    Base.metadata.info["classes"] = [Account, LineItem]  # keep them alive
    return Base.metadata


def autogenerate_quietly(
    connection: sa.Connection, metadata: sa.MetaData
) -> tuple[tuple[list[str], list[str]], list[str]]:
    """Autogenerate's lines (include_schemas) and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = autogenerate(connection, metadata, include_schemas=True)
    return lines, [str(w.message) for w in caught if "hyper_audit" in str(w.message)]


# -- adoption ----------------------------------------------------------------------------


def _adopt_online(engine: sa.Engine, pg_server: ThrowawayPostgres, dbname: str) -> None:
    run_online(engine, lambda op: op.adopt_audit())


def _adopt_offline(engine: sa.Engine, pg_server: ThrowawayPostgres, dbname: str) -> None:
    apply_sql(pg_server, dbname, offline_sql(lambda op: op.adopt_audit()))


def _install_online(engine: sa.Engine, pg_server: ThrowawayPostgres, dbname: str) -> None:
    # op.install_audit() over the reference takes it over the same way; a second time it
    # changes nothing.
    run_online(engine, lambda op: op.install_audit())
    run_online(engine, lambda op: op.install_audit())


ADOPTERS: dict[str, Callable[[sa.Engine, ThrowawayPostgres, str], None]] = {
    "adopt-online": _adopt_online,
    "adopt-offline": _adopt_offline,
    "install-online": _install_online,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("adopter", list(ADOPTERS))
def test_adoption_keeps_rows_and_ids_and_moves_every_tracked_table(
    variant: str,
    adopter: str,
    engine: sa.Engine,
    db_url: str,
    pg_server: ThrowawayPostgres,
    fresh_snapshot: dict[str, Any],
) -> None:
    dbname = sa.engine.make_url(db_url).database
    assert dbname is not None
    with connect(db_url) as db:
        build_reference(db, variant)
        assert db.normalized_audit_rows() == REFERENCE_HISTORY
        before = db.audit_rows()
        ids = [i for (i,) in db.rows("select id from audit.record_version order by id")]
        if variant == "extension":
            assert (
                db.one(
                    "select count(*) from pg_depend where deptype = 'e' and refobjid ="
                    " (select oid from pg_extension where extname = 'supa_audit')"
                )
                == 10
            )

        ADOPTERS[adopter](engine, pg_server, dbname)

        assert_adopted(db, before, ids)
        one = record_id(db.oid("account"), "1")
        # One record's history runs on across the adoption: two rows from the reference's
        # triggers, one from ours, under the same record id.
        assert account_history(engine) == [
            ("INSERT", one, None),
            ("UPDATE", one, one),
            ("UPDATE", one, one),
        ]
        if variant != "timescale-shaped":
            # The same catalog as a fresh install (the TimescaleDB shape keeps its indexes).
            db.run("""delete from shop."Line Item\"""")
            assert catalog_snapshot(db) == fresh_snapshot
        with engine.begin() as connection:
            assert autogenerate(
                connection, models("account", "Line Item"), include_schemas=True
            ) == ([], [])


def test_autogenerate_proposes_the_adoption_first(engine: sa.Engine, db_url: str) -> None:
    with connect(db_url) as db:
        build_reference(db, "extension")
        db.run("create table note (id int primary key)")
    metadata = models("account", "Line Item")
    sa.Table(
        "note", metadata, sa.Column("id", sa.Integer, primary_key=True), info={"audited": True}
    )
    with engine.begin() as connection:
        (upgrade, downgrade), warned = autogenerate_quietly(connection, metadata)
    assert upgrade == ["op.adopt_audit()", "op.enable_tracking('note')"]
    assert downgrade == ["op.disable_tracking('note')", "op.unadopt_audit()"]
    assert warned == []
    # The comparator read the catalog; it changed nothing.
    with connect(db_url) as db:
        assert triggers(db, "account") == ["audit_i_u_d", "audit_t"]


def test_adopting_while_the_application_writes_records_each_change_once(
    engine: sa.Engine, db_url: str
) -> None:
    """A write that comes during the adoption waits for it, then is recorded once, by ours."""
    with connect(db_url) as db, connect(db_url) as app:
        build_reference(db, "plain")
        app_pid = app.one("select pg_backend_pid()")
        errors: list[BaseException] = []

        def write() -> None:
            try:
                app.run("insert into account values (5, 'during')")
            except BaseException as exc:  # reported below
                errors.append(exc)

        with engine.connect() as connection:
            transaction = connection.begin()
            operations = Operations(MigrationContext.configure(connection))
            operations.adopt_audit()  # type: ignore[attr-defined]
            writer = threading.Thread(target=write)
            writer.start()
            # Wait until the write waits for the migration's lock on account.
            while not db.one(
                "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", [app_pid]
            ):
                writer.join(0.01)
                assert writer.is_alive(), errors
            transaction.commit()
        writer.join()
        assert errors == []
        five = db.rows(
            "select op::text, record from audit.record_version where record_id = %s",
            [str(record_id(db.oid("account"), "5"))],
        )
        assert five == [("INSERT", {"id": 5, "name": "during"})]


def test_unadopt_refuses_with_what_to_do(engine: sa.Engine, db_url: str) -> None:
    assert AdoptAuditOp().reverse().to_diff_tuple() == ("unadopt_audit",)
    assert UnadoptAuditOp().reverse().to_diff_tuple() == ("adopt_audit",)
    with connect(db_url) as db:
        build_reference(db, "plain")
        run_online(engine, lambda op: op.adopt_audit())
        before = catalog_snapshot(db)
        with pytest.raises(AuditOperationError) as online:
            run_online(engine, lambda op: op.unadopt_audit())
        with pytest.raises(AuditOperationError) as offline:
            offline_sql(lambda op: op.unadopt_audit())
        assert catalog_snapshot(db) == before
    assert str(online.value) == str(offline.value) == UNADOPT_REFUSAL
    assert UNADOPT_REFUSAL == (
        "op.unadopt_audit: the take-over of an existing supa_audit / hyper_audit install "
        "(op.adopt_audit()) cannot be undone: the reference's trigger functions (and its "
        "extension, if it was one) are gone, and the tables it tracked are tracked by "
        "hyper_audit's triggers. The history is complete. To downgrade past this migration "
        "and keep the audit trail as it is, delete this op.unadopt_audit() line from the "
        "migration's downgrade(); to remove the audit trail as well, replace it with "
        "op.uninstall_audit(keep_history=True)."
    )


def test_adoption_refuses_a_foreign_audit_table(engine: sa.Engine, db_url: str) -> None:
    with connect(db_url) as db:
        db.run(REFERENCE)
        db.run("alter table audit.record_version drop column old_record, alter ts type text")
        with pytest.raises(sa.exc.DBAPIError) as error:
            run_online(engine, lambda op: op.adopt_audit())
        assert error.value.orig.pgcode == "55000"  # type: ignore[union-attr]
        assert db.one("select to_regclass('audit.schema_version')") is None
    assert error.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        "hyper_audit: cannot take over the existing audit install: audit.record_version is "
        "not the supa_audit / hyper_audit table (column ts is text, not timestamp with time "
        "zone; column old_record is missing)"
    )


MODELS = ACCOUNT_MODELS


def test_project_round_trip_of_an_adoption(tmp_path: Path, db_url: str) -> None:
    with connect(db_url) as db:
        build_reference(db, "extension")
        db.run("""drop table shop."Line Item"; drop schema shop""")
        project = Project.create(tmp_path, db_url, MODELS)
        text = project.revision("adopt supa_audit")
        assert migration_body(text, "upgrade") == ["op.adopt_audit()"]
        assert migration_body(text, "downgrade") == ["op.unadopt_audit()"]
        assert "from hyper_audit_alembic import op" in text

        offline = project.upgrade(sql=True)
        assert "".join(s + ";\n\n" for s in sql.statements("adopt_finish")) in offline

        project.upgrade()
        assert reference_objects(db) == [(None, None, None)]
        assert triggers(db, "account") == OUR_TRIGGERS
        assert project.check() == "No new upgrade operations detected.\n"
        with pytest.raises(CommandError) as error:
            project.downgrade("base")
        assert str(error.value) == UNADOPT_REFUSAL
        assert triggers(db, "account") == OUR_TRIGGERS


def test_adoption_of_the_timescaledb_conversion(ts_server: ThrowawayPostgres) -> None:
    """hyper_audit's own layout on TimescaleDB: the hypertable is kept as it is."""
    with fresh_database(ts_server) as url, connect(url) as db:
        engine = sa.create_engine(url)
        try:
            db.run("create extension timescaledb")
            build_reference(
                db,
                REFERENCE
                + TIMESCALE_SHAPE
                + "select create_hypertable('audit.record_version', 'ts');",
            )
            before = db.audit_rows()
            ids = [i for (i,) in db.rows("select id from audit.record_version order by id")]
            run_online(engine, lambda op: op.adopt_audit())
            assert_adopted(db, before, ids)
            assert db.rows(
                "select hypertable_schema::text, hypertable_name::text"
                " from timescaledb_information.hypertables"
            ) == [("audit", "record_version")]
        finally:
            engine.dispose()


# -- tables tracked by hand --------------------------------------------------------------


def hand_tracking_warning(table: str, call: str) -> str:
    return (
        f"hyper_audit: table {table} is tracked by the audit trail, but no model flags it for "
        f"auditing and no migration enabled its tracking (audit.enable_tracking() was called "
        f"outside the migrations). Autogenerate leaves it tracked. To keep it tracked, flag "
        f"its model (__audited__ = True, or info={{'audited': True}} on a Table); to stop "
        f"tracking it, write {call} in a migration."
    )


def test_tracked_by_hand_is_reported_and_a_removed_flag_disables(
    engine: sa.Engine, db_url: str
) -> None:
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(TABLES)
        # account by a migration, shop."Line Item" by hand.
        run_online(engine, lambda op: op.enable_tracking("account"))
        db.run("""select audit.enable_tracking('shop."Line Item"')""")
    with engine.begin() as connection:
        # Both flagged: in sync.
        assert autogenerate_quietly(connection, models("account", "Line Item")) == (([], []), [])
        # Neither flagged: the migration's tracking goes (its flag was removed); the hand
        # tracking is reported, not undone.
        lines, warned = autogenerate_quietly(connection, models())
        assert lines == (["op.disable_tracking('account')"], ["op.enable_tracking('account')"])
        assert warned == [
            hand_tracking_warning(
                "shop.Line Item", "op.disable_tracking('Line Item', schema='shop')"
            )
        ]


def test_the_migration_mark_survives_triggers_made_anew(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(TABLES)
        run_online(engine, lambda op: op.enable_tracking("account"))
        db.run("select audit.enable_tracking('account')")  # by hand again: still marked
        # A key change re-creates the triggers (the event trigger calls enable_tracking).
        db.run("alter table account drop constraint account_pkey, add primary key (id, name)")
        assert (
            db.one(
                "select obj_description(oid, 'pg_trigger') from pg_trigger"
                " where tgrelid = 'account'::regclass and tgname = 'audit_truncate'"
            )
            == "tracked by a hyper_audit_alembic migration"
        )
        # Disabled and enabled by hand: no longer the migration's.
        db.run("select audit.disable_tracking('account')")
        db.run("select audit.enable_tracking('account')")
    with engine.begin() as connection:
        lines, warned = autogenerate_quietly(connection, models())
    assert lines == ([], [])
    assert warned == [hand_tracking_warning("account", "op.disable_tracking('account')")]


def test_unflagged_tables_of_the_reference_are_reported_not_untracked(
    engine: sa.Engine, db_url: str
) -> None:
    with connect(db_url) as db:
        build_reference(db, "plain")
    with engine.begin() as connection:
        lines, warned = autogenerate_quietly(connection, models("account"))
    assert lines == (["op.adopt_audit()"], ["op.unadopt_audit()"])
    assert warned == [
        hand_tracking_warning("shop.Line Item", "op.disable_tracking('Line Item', schema='shop')")
    ]


def test_a_dropped_table_tracked_by_hand_stops_being_tracked_first(
    engine: sa.Engine, db_url: str
) -> None:
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name varchar not null)")
        db.run("select audit.enable_tracking('account')")
    with engine.begin() as connection:
        (upgrade, _), warned = autogenerate_quietly(connection, sa.MetaData())
    assert upgrade == ["op.disable_tracking('account')", "op.drop_table('account')"]
    assert warned == []
