"""Upgrading the audit schema between releases: ``op.upgrade_audit`` / ``op.downgrade_audit``.

Every released audit schema version is installed as its release installed it (its frozen
SQL, ``sql/released/<n>.sql``), given tracked tables and history, and upgraded to the
current version online and through offline SQL applied with psql. The result must be the
catalog of a fresh install of the current version, with every history row kept and
readable and tracking still working; the downgrade must give back the old behaviour with
every row kept. Autogenerate proposes the upgrade (exact text) and round-trips it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.util import CommandError
from alembic_project import ACCOUNT_MODELS, Project, autogenerate, migration_body
from audit_helpers import (
    RELEASED_SHA256,
    Db,
    apply_sql,
    catalog_snapshot,
    connect,
    extra_database,
    offline_sql,
    psql_error,
    record_id,
    run_online,
    snapshot_of,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import history, sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration import statements as migration_statements
from hyper_audit_alembic.migration.ops import DowngradeAuditOp, UpgradeAuditOp

#: Every released audit schema version older than the current one.
RELEASED = [version for version in sql.RELEASED_VERSIONS if version < sql.SCHEMA_VERSION]
CURRENT = sql.SCHEMA_VERSION

UPGRADE_LINE = f"op.upgrade_audit(from_version=1, to_version={CURRENT})"
DOWNGRADE_LINE = f"op.downgrade_audit(from_version={CURRENT}, to_version=1)"


def released_text(version: int) -> bytes:
    return (Path(sql.__file__).parent / "released" / f"{version}.sql").read_bytes()


@pytest.mark.parametrize("version", sorted(RELEASED_SHA256))
def test_released_versions_are_frozen(version: int) -> None:
    assert hashlib.sha256(released_text(version)).hexdigest() == RELEASED_SHA256[version], (
        f"sql/released/{version}.sql changed. It is the SQL that installs of audit schema "
        f"version {version} were made with: put the change into a new version step instead "
        f"(sql/README.md)."
    )


def install_released(engine: sa.Engine, version: int) -> None:
    """Install ``version`` as its release did: its frozen SQL, checked against its hash."""
    assert hashlib.sha256(released_text(version)).hexdigest() == RELEASED_SHA256[version], (
        f"sql/released/{version}.sql is not the SQL version {version} was released with"
    )
    with engine.begin() as connection:
        for statement in sql.released_statements(version):
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


TABLES = """
create table account (id int primary key, name text not null);
create schema shop;
create table shop."Line Item" (order_id int, line int, what text, primary key (order_id, line));
"""


def track(engine: sa.Engine) -> None:
    """account by a migration, shop."Line Item" by hand."""
    run_online(engine, lambda op: op.enable_tracking("account"))
    with engine.begin() as connection:
        connection.exec_driver_sql("""select audit.enable_tracking('shop."Line Item"')""")


def populate(engine: sa.Engine, db: Db) -> None:
    """The tables, their tracking, and history written by the installed version."""
    db.run(TABLES)
    track(engine)
    db.run("insert into account values (1, 'Foo Barsworth'), (2, 'Two')")
    db.run("update account set name = 'Foo Barsworth III' where id = 1")
    db.run("delete from account where id = 2")
    db.run("""insert into shop."Line Item" values (10, 1, 'pen'), (10, 2, 'ink')""")
    db.run("""update shop."Line Item" set line = 3 where line = 2""")
    db.run("""truncate shop."Line Item\"""")


ACCOUNT = ("public", "account")
LINE = ("shop", "Line Item")

HISTORY = [
    ("INSERT", (*ACCOUNT, "1"), None, *ACCOUNT, {"id": 1, "name": "Foo Barsworth"}, None),
    ("INSERT", (*ACCOUNT, "2"), None, *ACCOUNT, {"id": 2, "name": "Two"}, None),
    (
        "UPDATE",
        (*ACCOUNT, "1"),
        (*ACCOUNT, "1"),
        *ACCOUNT,
        {"id": 1, "name": "Foo Barsworth III"},
        {"id": 1, "name": "Foo Barsworth"},
    ),
    ("DELETE", None, (*ACCOUNT, "2"), *ACCOUNT, None, {"id": 2, "name": "Two"}),
    ("INSERT", (*LINE, "10", "1"), None, *LINE, {"order_id": 10, "line": 1, "what": "pen"}, None),
    ("INSERT", (*LINE, "10", "2"), None, *LINE, {"order_id": 10, "line": 2, "what": "ink"}, None),
    (
        "UPDATE",
        (*LINE, "10", "3"),
        (*LINE, "10", "2"),
        *LINE,
        {"order_id": 10, "line": 3, "what": "ink"},
        {"order_id": 10, "line": 2, "what": "ink"},
    ),
    ("TRUNCATE", None, None, *LINE, None, None),
]


def write_more(db: Db) -> list[tuple[Any, ...]]:
    """Changes after the upgrade or downgrade; their expected audit rows."""
    db.run("update account set name = 'After' where id = 1")
    db.run("""insert into shop."Line Item" values (11, 1, 'paper')""")
    return [
        (
            "UPDATE",
            (*ACCOUNT, "1"),
            (*ACCOUNT, "1"),
            *ACCOUNT,
            {"id": 1, "name": "After"},
            {"id": 1, "name": "Foo Barsworth III"},
        ),
        (
            "INSERT",
            (*LINE, "11", "1"),
            None,
            *LINE,
            {"order_id": 11, "line": 1, "what": "paper"},
            None,
        ),
    ]


def who(db: Db) -> list[tuple[Any, ...]]:
    """Per audit row: the actor, the context, whether it has a transaction id."""
    return db.rows(
        "select actor, context, transaction_id is not null from audit.record_version order by id"
    )


def schema_version(db: Db) -> int:
    return int(db.one("select version from audit.schema_version"))


@pytest.fixture(scope="module")
def current_snapshot(pg_server: ThrowawayPostgres) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The catalog of a fresh install of the current version, same tables, same tracking."""
    with extra_database(pg_server, "upgrades_fresh_install") as name:
        url = pg_server.url(name)
        engine = sa.create_engine(url)
        try:
            run_online(engine, lambda op: op.install_audit())
            with connect(url) as db:
                db.run(TABLES)
                track(engine)
                assert schema_version(db) == CURRENT
            yield snapshot_of(url)
        finally:
            engine.dispose()


def account_history(engine: sa.Engine) -> list[tuple[str, uuid.UUID | None, uuid.UUID | None]]:
    """Record 1 of account, read with the package's history API."""
    with Session(engine) as session:
        return [
            (version.op.value, version.record_id, version.old_record_id)
            for version in history(session, "account", 1)
        ]


# -- upgrade and downgrade with data in place --------------------------------------------


@pytest.mark.parametrize("version", RELEASED)
def test_upgrade_online_keeps_history_and_equals_a_fresh_install(
    version: int, engine: sa.Engine, db_url: str, current_snapshot: dict[str, Any]
) -> None:
    install_released(engine, version)
    with connect(db_url) as db:
        populate(engine, db)
        assert schema_version(db) == version
        assert db.normalized_audit_rows() == HISTORY
        before = db.audit_rows()

        run_online(engine, lambda op: op.upgrade_audit(from_version=version, to_version=CURRENT))
        assert catalog_snapshot(db) == current_snapshot
        assert db.audit_rows() == before
        # Version 1 recorded no actor, context or transaction id; version 2 on did.
        recorded_by = (None, None, False) if version == 1 else ("postgres", None, True)
        assert who(db) == [recorded_by] * len(HISTORY)
        account = db.oid("account")
        one = record_id(account, "1")
        assert account_history(engine) == [
            ("INSERT", one, None),
            ("UPDATE", one, one),
        ]

        # Tracking goes on, by migration and by hand alike, now with the new columns.
        after_upgrade = write_more(db)
        assert db.normalized_audit_rows() == HISTORY + after_upgrade
        assert who(db)[len(HISTORY) :] == [("postgres", None, True)] * 2
        assert account_history(engine)[-1] == ("UPDATE", one, one)

        # And back: the old version's behaviour, every row and value kept.
        run_online(engine, lambda op: op.downgrade_audit(from_version=CURRENT, to_version=version))
        assert schema_version(db) == version
        recorded = who(db)
        after_downgrade = write_more_again(db)
        assert db.normalized_audit_rows() == HISTORY + after_upgrade + after_downgrade
        if version == 1:
            # Version 1 fills no actor, context or transaction id; the columns stay with
            # what version 2 recorded.
            assert who(db) == [*recorded, (None, None, False), (None, None, False)]
            assert not db.one(
                "select to_regclass('audit.record_version_transaction_id') is not null"
            )

        # Upgrading again gives the fresh install's catalog again.
        run_online(engine, lambda op: op.upgrade_audit(from_version=version, to_version=CURRENT))
        assert catalog_snapshot(db) == current_snapshot
        assert len(db.audit_rows()) == len(HISTORY) + 4


def key_change_conditions(db: Db) -> list[tuple[int, str]]:
    """(oid, body) of each key-change condition audit_key_change triggers call."""
    return db.rows(
        "select p.oid::bigint, p.prosrc from pg_proc p where p.pronamespace = 'audit'::regnamespace"
        " and p.proname like 'key\\_changed\\_%' order by p.proname"
    )


def test_upgrade_from_version_2_closes_the_write_path_holes(engine: sa.Engine, db_url: str) -> None:
    """Issue 12 (classes 2-4) on a database that today's main (version 2) installed: the
    upgrade rewrites the key-change conditions in place (same functions, so the existing
    WHEN clauses use the new body), the writer's attacks then fail, and the history that
    version 2 wrote stays readable."""
    install_released(engine, 2)
    writer = f"w_{uuid.uuid4().hex[:12]}"
    with connect(db_url) as db:
        populate(engine, db)
        before = key_change_conditions(db)
        assert len(before) == 2  # (id) and (order_id, line)
        assert all("::text operator(pg_catalog.<>)" in body for _, body in before)

        run_online(engine, lambda op: op.upgrade_audit(from_version=2, to_version=CURRENT))
        after = key_change_conditions(db)
        assert [oid for oid, _ in after] == [oid for oid, _ in before]
        assert sorted(body for _, body in after) == [
            "select pg_catalog.record_image_ne(row((old_row).id), row((new_row).id))",
            "select pg_catalog.record_image_ne(row((old_row).order_id, (old_row).line),"
            " row((new_row).order_id, (new_row).line))",
        ]

        db.run("""insert into shop."Line Item" values (20, 1, 'a'), (20, 2, 'b')""")
        recorded = len(db.audit_rows())
        db.run(
            f"create role {writer}; grant usage on schema shop to {writer};"
            f""" grant select, update on account, shop."Line Item" to {writer}"""
        )
        try:
            # A DML-only writer shadows the type text, forges version 2's key-change marker
            # and renders with its own output settings: nothing of it changes the rows.
            db.run(f"set role {writer}")
            db.run("create domain pg_temp.text as pg_catalog.bool")
            db.run("begin")
            db.run(
                "select set_config('audit.key_change_' || %s || '_1', '1', true),"
                " set_config('extra_float_digits', '-15', true),"
                " set_config('TimeZone', 'Asia/Kathmandu', true)",
                [str(db.oid('shop."Line Item"'))],
            )
            db.run("""update shop."Line Item" set line = line + 10""")
            db.run("update account set id = 5 where id = 1")
            db.run("commit")
        finally:
            db.run("reset role; discard temp")
            db.run(f"drop owned by {writer}; drop role {writer}")
        added = db.normalized_audit_rows()[recorded:]
        assert sorted(added[:2], key=repr) == sorted(
            [
                ("UPDATE", (*LINE, "20", str(line + 10)), (*LINE, "20", str(line)), *LINE,
                 {"order_id": 20, "line": line + 10, "what": what},
                 {"order_id": 20, "line": line, "what": what})
                for line, what in ((1, "a"), (2, "b"))
            ],
            key=repr,
        )  # fmt: skip
        assert added[2:] == [
            ("UPDATE", (*ACCOUNT, "5"), (*ACCOUNT, "1"), *ACCOUNT,
             {"id": 5, "name": "Foo Barsworth III"}, {"id": 1, "name": "Foo Barsworth III"}),
        ]  # fmt: skip
        one = record_id(db.oid("account"), "1")
        assert account_history(engine)[:2] == [("INSERT", one, None), ("UPDATE", one, one)]


@pytest.mark.parametrize("version", sql.RELEASED_VERSIONS)
def test_install_over_a_released_version_keeps_history_and_equals_a_fresh_install(
    version: int, engine: sa.Engine, db_url: str, current_snapshot: dict[str, Any]
) -> None:
    """op.install_audit() over an install any release made (today's main made version 2)."""
    install_released(engine, version)
    with connect(db_url) as db:
        populate(engine, db)
        before = db.audit_rows()
        if version == CURRENT:
            # The current version as released is what a fresh install makes, functions
            # (by their definitions), privileges and event triggers included.
            assert catalog_snapshot(db) == current_snapshot
        run_online(engine, lambda op: op.install_audit())
        assert catalog_snapshot(db) == current_snapshot
        assert db.audit_rows() == before
        after = write_more(db)
        assert db.normalized_audit_rows() == HISTORY + after


def write_more_again(db: Db) -> list[tuple[Any, ...]]:
    db.run("delete from account where id = 1")
    db.run("""delete from shop."Line Item\"""")
    return [
        ("DELETE", None, (*ACCOUNT, "1"), *ACCOUNT, None, {"id": 1, "name": "After"}),
        (
            "DELETE",
            None,
            (*LINE, "11", "1"),
            *LINE,
            None,
            {"order_id": 11, "line": 1, "what": "paper"},
        ),
    ]


def _offline_text(statements: list[str]) -> str:
    return "BEGIN;\n\n" + "".join(s + ";\n\n" for s in statements) + "COMMIT;\n\n"


@pytest.mark.parametrize("version", RELEASED)
def test_upgrade_and_downgrade_offline_with_psql(
    version: int,
    engine: sa.Engine,
    db_url: str,
    pg_server: ThrowawayPostgres,
    current_snapshot: dict[str, Any],
) -> None:
    upgrade = offline_sql(lambda op: op.upgrade_audit(from_version=version, to_version=CURRENT))
    downgrade = offline_sql(lambda op: op.downgrade_audit(from_version=CURRENT, to_version=version))
    assert upgrade == _offline_text(migration_statements.upgrade_statements(version, CURRENT))
    assert downgrade == _offline_text(sql.downgrade_statements(CURRENT, version))

    install_released(engine, version)
    dbname = sa.engine.make_url(db_url).database
    assert dbname is not None
    with connect(db_url) as db:
        populate(engine, db)
        before = db.audit_rows()

        apply_sql(pg_server, dbname, upgrade)
        assert catalog_snapshot(db) == current_snapshot
        assert db.audit_rows() == before
        after_upgrade = write_more(db)
        assert db.normalized_audit_rows() == HISTORY + after_upgrade

        # The version guard is in the SQL: the same script a second time changes nothing.
        error = psql_error(pg_server, dbname, upgrade)
        assert error.startswith(
            f"ERROR:  audit schema upgrade to version {version + 1}: the installed audit schema "
            f"is version {CURRENT}, not version {version}\nHINT:  "
        ), error

        apply_sql(pg_server, dbname, downgrade)
        assert schema_version(db) == version
        after_downgrade = write_more_again(db)
        assert db.normalized_audit_rows() == HISTORY + after_upgrade + after_downgrade
        error = psql_error(pg_server, dbname, downgrade)
        assert error.startswith(
            f"ERROR:  audit schema downgrade to version {CURRENT - 1}: the installed audit schema "
            f"is version {version}, not version {CURRENT}\nHINT:  "
        ), error


def test_upgrade_refuses_a_database_at_another_version(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit())
    with pytest.raises(sa.exc.DBAPIError) as error:
        run_online(engine, lambda op: op.upgrade_audit(from_version=1, to_version=CURRENT))
    assert (error.value.orig.pgcode, error.value.orig.diag.message_primary) == (  # type: ignore[union-attr]
        "55000",  # object_not_in_prerequisite_state
        f"audit schema upgrade to version 2: the installed audit schema is version {CURRENT}, "
        f"not version 1",
    )
    with connect(db_url) as db:
        assert schema_version(db) == CURRENT


def test_downgrade_to_2_refuses_while_a_table_is_tracked_on_replica(
    engine: sa.Engine, db_url: str
) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("create table account (id int primary key, name text)")
    run_online(engine, lambda op: op.install_audit())
    run_online(engine, lambda op: op.enable_tracking("account", on_replica=True))
    with engine.begin() as connection:
        connection.exec_driver_sql("insert into account values (1, 'Foo')")
    with pytest.raises(sa.exc.DBAPIError) as error:
        run_online(engine, lambda op: op.downgrade_audit(from_version=CURRENT, to_version=2))
    assert error.value.orig.pgcode == "55000"  # type: ignore[union-attr]
    assert error.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        "audit schema downgrade to version 2: tables tracked with on_replica: account"
    )
    with connect(db_url) as db:
        assert schema_version(db) == CURRENT
    # Without on_replica the downgrade goes through and keeps the row recorded before.
    run_online(
        engine, lambda op: op.alter_tracking("account", existing_on_replica=True)
    )
    run_online(engine, lambda op: op.downgrade_audit(from_version=CURRENT, to_version=2))
    with engine.begin() as connection:
        connection.exec_driver_sql("update account set name = 'Bar'")
    with connect(db_url) as db:
        assert schema_version(db) == 2
    assert [op for op, _, _ in account_history(engine)] == ["INSERT", "UPDATE"]


# -- the operations themselves -----------------------------------------------------------


def test_upgrade_and_downgrade_ops_reverse_each_other() -> None:
    upgrade = UpgradeAuditOp(1, CURRENT)
    assert upgrade.to_diff_tuple() == ("upgrade_audit", 1, CURRENT)
    downgrade = upgrade.reverse()
    assert isinstance(downgrade, DowngradeAuditOp)
    assert downgrade.to_diff_tuple() == ("downgrade_audit", CURRENT, 1)
    again = downgrade.reverse()
    assert isinstance(again, UpgradeAuditOp)
    assert again.to_diff_tuple() == ("upgrade_audit", 1, CURRENT)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: UpgradeAuditOp(CURRENT, 1),
            f"op.upgrade_audit: to_version (1) must be later than from_version ({CURRENT}); "
            f"op.downgrade_audit() goes back",
        ),
        (
            lambda: DowngradeAuditOp(1, CURRENT),
            f"op.downgrade_audit: to_version ({CURRENT}) must be earlier than from_version "
            f"(1); op.upgrade_audit() goes forward",
        ),
        (
            lambda: UpgradeAuditOp(1, CURRENT + 1),
            f"op.upgrade_audit: to_version={CURRENT + 1} is not an audit schema version this "
            f"release of hyper_audit_alembic knows (1 to {CURRENT}); a migration written for "
            f"a later release needs that release installed",
        ),
        (
            lambda: UpgradeAuditOp("1", CURRENT),  # type: ignore[arg-type]
            "op.upgrade_audit: from_version must be an audit schema version number (an int), "
            "not '1'",
        ),
    ],
    ids=["backwards-up", "forwards-down", "unknown-version", "not-an-int"],
)
def test_version_arguments_are_checked(make: Any, message: str) -> None:
    with pytest.raises(AuditOperationError) as error:
        make()
    assert str(error.value) == message


# -- autogenerate ------------------------------------------------------------------------


def account_models(note: bool = False) -> Any:
    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "account"
        __audited__ = True

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    classes: list[type] = [Account]
    if note:

        class Note(Base):
            __tablename__ = "note"
            __audited__ = True

            id: Mapped[int] = mapped_column(primary_key=True)

        classes.append(Note)
    Base.metadata.info["classes"] = classes  # keep the classes alive with the metadata
    return Base.metadata


def old_install_with_account(engine: sa.Engine) -> None:
    install_released(engine, 1)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "create table account (id int primary key, name varchar not null)"
        )
        operations = Operations(MigrationContext.configure(connection))
        operations.enable_tracking("account")  # type: ignore[attr-defined]
        connection.exec_driver_sql("insert into account values (1, 'a')")


def test_autogenerate_upgrades_an_old_audit_schema_first(engine: sa.Engine) -> None:
    old_install_with_account(engine)
    with engine.begin() as connection:
        assert autogenerate(connection, account_models()) == ([UPGRADE_LINE], [DOWNGRADE_LINE])
        upgrade, downgrade = autogenerate(connection, account_models(note=True))
    assert upgrade == [
        UPGRADE_LINE,
        "op.create_table('note',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id')",
        ")",
        "op.enable_tracking('note')",
    ]
    assert downgrade == ["op.disable_tracking('note')", "op.drop_table('note')", DOWNGRADE_LINE]
    run_online(engine, lambda op: op.upgrade_audit(from_version=1, to_version=CURRENT))
    with engine.begin() as connection:
        assert autogenerate(connection, account_models()) == ([], [])


def test_autogenerate_proposes_the_upgrade_from_version_2(engine: sa.Engine) -> None:
    install_released(engine, 2)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "create table account (id int primary key, name varchar not null)"
        )
        connection.exec_driver_sql("select audit.enable_tracking('account')")
        assert autogenerate(connection, account_models()) == (
            [f"op.upgrade_audit(from_version=2, to_version={CURRENT})"],
            [f"op.downgrade_audit(from_version={CURRENT}, to_version=2)"],
        )
    run_online(engine, lambda op: op.upgrade_audit(from_version=2, to_version=CURRENT))
    with engine.begin() as connection:
        assert autogenerate(connection, account_models()) == ([], [])


def test_autogenerate_refuses_a_newer_audit_schema(engine: sa.Engine) -> None:
    run_online(engine, lambda op: op.install_audit())
    with engine.begin() as connection:
        connection.exec_driver_sql(f"update audit.schema_version set version = {CURRENT + 1}")
        with pytest.raises(CommandError) as error:
            autogenerate(connection, account_models())
    assert str(error.value) == (
        f"hyper_audit: the database's audit schema is version {CURRENT + 1}, newer than the "
        f"version {CURRENT} this release of hyper_audit_alembic installs. Upgrade "
        f"hyper_audit_alembic to the release that installed it before running autogenerate "
        f"against this database."
    )


MODELS = ACCOUNT_MODELS


def test_project_round_trip_of_an_upgrade(tmp_path: Path, db_url: str, engine: sa.Engine) -> None:
    old_install_with_account(engine)
    project = Project.create(tmp_path, db_url, MODELS)
    text = project.revision("audit schema upgrade")
    assert migration_body(text, "upgrade") == [UPGRADE_LINE]
    assert migration_body(text, "downgrade") == [DOWNGRADE_LINE]

    offline = project.upgrade(sql=True)
    assert "".join(s + ";\n\n" for s in sql.upgrade_statements(1, CURRENT)) in offline

    with connect(db_url) as db:
        project.upgrade()
        assert schema_version(db) == CURRENT
        assert project.check() == "No new upgrade operations detected.\n"
        db.run("update account set name = 'b'")
        project.downgrade("base")
        assert schema_version(db) == 1
        db.run("update account set name = 'c'")
        project.upgrade()
        assert schema_version(db) == CURRENT
        assert project.check() == "No new upgrade operations detected.\n"
        assert [(op, rec["name"]) for op, *_, rec, _ in db.audit_rows()] == [
            ("INSERT", "a"),
            ("UPDATE", "b"),
            ("UPDATE", "c"),
        ]
