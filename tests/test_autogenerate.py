"""Autogenerate with the ``hyper_audit`` comparator: exact rendered text, real server."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.util import CommandError
from alembic_project import Project, autogenerate, migration_body
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import hyper_audit_alembic

PLUGIN_LOGGER = "alembic.autogenerate.compare.hyper_audit"
PACKAGE_DIR = str(Path(hyper_audit_alembic.__file__).parent)

ACCOUNT_CREATE = [
    "op.create_table('account',",
    "sa.Column('id', sa.Integer(), nullable=False),",
    "sa.Column('name', sa.String(), nullable=False),",
    "sa.PrimaryKeyConstraint('id')",
    ")",
]
# How autogenerate writes the same table back from the database (downgrade side).
ACCOUNT_RECREATE = [
    "op.create_table('account',",
    "sa.Column('id', sa.INTEGER(), autoincrement=True, nullable=False),",
    "sa.Column('name', sa.VARCHAR(), autoincrement=False, nullable=False),",
    "sa.PrimaryKeyConstraint('id', name=op.f('account_pkey'))",
    ")",
]


def account_models(audited: bool = True, note: bool = False) -> SimpleNamespace:
    """The models' metadata, with the classes (SQLAlchemy's registry holds them weakly)."""

    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "account"
        __audited__ = audited

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    if note:

        class Note(Base):
            __tablename__ = "note"

            id: Mapped[int] = mapped_column(primary_key=True)

    return SimpleNamespace(metadata=Base.metadata, classes=Base.registry.mappers)


def install(connection: sa.Connection, *track: str) -> None:
    """Install the audit schema and track tables, as a migration would."""
    operations = Operations(MigrationContext.configure(connection))
    operations.install_audit()  # type: ignore[attr-defined]
    for name in track:
        schema, _, table = name.rpartition(".")
        operations.enable_tracking(table, schema=schema or None)  # type: ignore[attr-defined]


def tracked_tables(connection: sa.Connection) -> list[str]:
    """The tables that carry the audit triggers (changes and truncate), as schema.table."""
    return list(
        connection.exec_driver_sql(
            "select n.nspname || '.' || c.relname from pg_trigger t "
            "join pg_class c on c.oid = t.tgrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where t.tgfoid in (to_regprocedure('audit.record_row_change()'), "
            "to_regprocedure('audit.record_truncate()')) "
            "group by 1 having count(distinct t.tgfoid) = 2 order by 1"
        ).scalars()
    )


def drop_blocks(upgrade: list[str]) -> list[list[str]]:
    """The upgrade cut after each drop_table, sorted: Alembic drops tables in set order."""
    blocks: list[list[str]] = [[]]
    for line in upgrade:
        blocks[-1].append(line)
        if line.startswith("op.drop_table("):
            blocks.append([])
    assert blocks[-1] == [], upgrade
    return sorted(blocks[:-1])


# -- what autogenerate writes ------------------------------------------------------------


def test_new_flagged_table_installs_audit_first_and_tracks_after_create(
    engine: sa.Engine,
) -> None:
    base = account_models(note=True)
    with engine.begin() as connection:
        upgrade, downgrade = autogenerate(connection, base.metadata)
    assert upgrade == [
        "op.install_audit()",
        *ACCOUNT_CREATE,
        "op.enable_tracking('account')",
        "op.create_table('note',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id')",
        ")",
    ]
    assert downgrade == [
        "op.drop_table('note')",
        "op.disable_tracking('account')",
        "op.drop_table('account')",
        "op.uninstall_audit(keep_history=True)",
    ]


def test_schema_is_rendered_only_off_the_default_schema(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    for schema in (None, "public", "other"):
        sa.Table(
            f"t_{schema}",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            schema=schema,
            info={"audited": True},
        )
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema other")
        upgrade, downgrade = autogenerate(connection, metadata, include_schemas=True)
    # Table.info is the user's own and Alembic renders it; the plugin adds nothing there.
    assert upgrade == [
        "op.install_audit()",
        "op.create_table('t_other',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id'),",
        "schema='other',",
        "info={'audited': True}",
        ")",
        "op.enable_tracking('t_other', schema='other')",
        "op.create_table('t_public',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id'),",
        "schema='public',",
        "info={'audited': True}",
        ")",
        "op.enable_tracking('t_public')",
        "op.create_table('t_None',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id'),",
        "info={'audited': True}",
        ")",
        "op.enable_tracking('t_None')",
    ]
    assert downgrade == [
        "op.disable_tracking('t_None')",
        "op.drop_table('t_None')",
        "op.disable_tracking('t_public')",
        "op.drop_table('t_public', schema='public')",
        "op.disable_tracking('t_other', schema='other')",
        "op.drop_table('t_other', schema='other')",
        "op.uninstall_audit(keep_history=True)",
    ]


def test_existing_table_gets_tracking_when_flagged(engine: sa.Engine) -> None:
    base = account_models()
    with engine.begin() as connection:
        base.metadata.create_all(connection)
        install(connection)
        assert autogenerate(connection, base.metadata) == (
            ["op.enable_tracking('account')"],
            ["op.disable_tracking('account')"],
        )


def test_removed_flag_disables_tracking(engine: sa.Engine) -> None:
    base = account_models(audited=False)
    with engine.begin() as connection:
        base.metadata.create_all(connection)
        install(connection, "account")
        assert autogenerate(connection, base.metadata) == (
            ["op.disable_tracking('account')"],
            ["op.enable_tracking('account')"],
        )


def test_tracked_table_removed_from_the_model(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        account_models().metadata.create_all(connection)
        install(connection, "account")
        upgrade, downgrade = autogenerate(connection, sa.MetaData())
    assert upgrade == ["op.disable_tracking('account')", "op.drop_table('account')"]
    assert downgrade == [*ACCOUNT_RECREATE, "op.enable_tracking('account')"]


def test_key_changed_behind_the_triggers_back_is_resynced(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    base = account_models()
    with engine.begin() as connection:
        base.metadata.create_all(connection)
        install(connection, "account")
        change_key = "alter table account drop constraint account_pkey, add primary key ({})"
        # As a superuser, the event trigger follows the key: nothing to do.
        connection.exec_driver_sql(change_key.format("id, name"))
        assert autogenerate(connection, base.metadata) == ([], [])
        # Without it (installed by a non-superuser) the triggers' key columns go stale,
        # and autogenerate re-syncs them; undoing that is not to stop tracking.
        connection.exec_driver_sql("drop event trigger audit_follow_primary_key_changes")
        connection.exec_driver_sql(change_key.format("id"))
        caplog.clear()
        assert autogenerate(connection, base.metadata) == (
            ["op.enable_tracking('account')"],
            ["op.enable_tracking('account')"],
        )
        assert [r.getMessage() for r in caplog.records if r.name == PLUGIN_LOGGER] == [
            "Detected tracking key columns changed for table 'account'"
        ]
        operations = Operations(MigrationContext.configure(connection))
        operations.enable_tracking("account")  # type: ignore[attr-defined]
        assert autogenerate(connection, base.metadata) == ([], [])


def test_in_sync_database_gives_no_operations_even_with_include_schemas(
    engine: sa.Engine,
) -> None:
    """The audit schema's own objects are never proposed for dropping or altering."""
    base = account_models(note=True)
    with engine.begin() as connection:
        base.metadata.create_all(connection)
        install(connection, "account")
        connection.exec_driver_sql("insert into account (id, name) values (1, 'a')")
        for include_schemas in (False, True):
            assert autogenerate(connection, base.metadata, include_schemas=include_schemas) == (
                [],
                [],
            )
        # Nothing flagged any more: tracking stops, the audit schema stays.
        unflagged = account_models(False, True)
        assert autogenerate(connection, unflagged.metadata, include_schemas=True) == (
            ["op.disable_tracking('account')"],
            ["op.enable_tracking('account')"],
        )
        upgrade, _ = autogenerate(connection, sa.MetaData(), include_schemas=True)
    assert drop_blocks(upgrade) == [
        ["op.disable_tracking('account')", "op.drop_table('account')"],
        ["op.drop_table('note')"],
    ]


def _flagged_tables(*names: str) -> sa.MetaData:
    metadata = sa.MetaData()
    for qualified in names:
        schema, _, name = qualified.rpartition(".")
        sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            schema=schema or None,
            info={"audited": True},
        )
    return metadata


def _not_skipped(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    return not (type_ == "table" and name == "skipped")


def _not_skipped_name(name: str | None, type_: str, parents: dict[str, str]) -> bool:
    return not (type_ == "table" and name == "skipped")


def _not_other(name: str | None, type_: str, parents: dict[str, str]) -> bool:
    return not (type_ == "schema" and name == "other")


def _audit_lines(upgrade: list[str]) -> list[str]:
    return [
        line
        for line in upgrade
        if line.startswith(("op.install", "op.uninstall", "op.enable", "op.disable"))
    ]


def test_filters_decide_what_is_installed_and_tracked(engine: sa.Engine) -> None:
    metadata = _flagged_tables("kept", "skipped", "other.elsewhere")
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema other")
        upgrade, _ = autogenerate(connection, metadata, include_object=_not_skipped)
        # Without include_schemas Alembic does not look into "other", so it proposes to
        # create other.elsewhere: tracking follows the table it creates.
        assert _audit_lines(upgrade) == [
            "op.install_audit()",
            "op.enable_tracking('kept')",
            "op.enable_tracking('elsewhere', schema='other')",
        ]
        assert "op.create_table('skipped'," not in upgrade

        # The install comes exactly when some table gets tracked.
        only_elsewhere = _flagged_tables("other.elsewhere")
        upgrade, downgrade = autogenerate(connection, only_elsewhere)
        assert _audit_lines(upgrade) == [
            "op.install_audit()",
            "op.enable_tracking('elsewhere', schema='other')",
        ]
        assert _audit_lines(downgrade) == [
            "op.disable_tracking('elsewhere', schema='other')",
            "op.uninstall_audit(keep_history=True)",
        ]
        assert autogenerate(
            connection, _flagged_tables("skipped"), include_object=_not_skipped
        ) == (
            [],
            [],
        )


def test_filters_keep_tracked_tables_out_of_reach(engine: sa.Engine) -> None:
    """Tracked tables that include_* filters hide are neither disabled nor dropped."""
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema other")
        _flagged_tables("kept", "skipped", "other.elsewhere").create_all(connection)
        install(connection, "kept", "skipped", "other.elsewhere")
        empty = sa.MetaData()
        for filters in ({"include_object": _not_skipped}, {"include_name": _not_skipped_name}):
            assert autogenerate(connection, empty, **filters)[0] == [
                "op.disable_tracking('kept')",
                "op.drop_table('kept')",
            ]
        upgrade, _ = autogenerate(
            connection, empty, include_schemas=True, include_object=_not_skipped
        )
        assert drop_blocks(upgrade) == [
            [
                "op.disable_tracking('elsewhere', schema='other')",
                "op.drop_table('elsewhere', schema='other')",
            ],
            ["op.disable_tracking('kept')", "op.drop_table('kept')"],
        ]
        upgrade, _ = autogenerate(
            connection,
            empty,
            include_schemas=True,
            include_name=_not_other,
            include_object=_not_skipped,
        )
        assert upgrade == ["op.disable_tracking('kept')", "op.drop_table('kept')"]


def test_flagged_table_without_primary_key_fails_with_the_fix(engine: sa.Engine) -> None:
    class Base(DeclarativeBase):
        pass

    log_table = sa.Table(
        "event_log", Base.metadata, sa.Column("at", sa.DateTime), sa.Column("what", sa.Text)
    )

    class EventLog(Base):
        __table__ = log_table
        __mapper_args__ = {"primary_key": [log_table.c.at]}
        __audited__ = True

    core = sa.MetaData()
    sa.Table("raw_log", core, sa.Column("line", sa.Text), info={"audited": True})

    with engine.begin() as connection:
        with pytest.raises(CommandError) as model_error:
            autogenerate(connection, Base.metadata)
        with pytest.raises(CommandError) as table_error:
            autogenerate(connection, core)
    assert str(model_error.value) == (
        "hyper_audit: model EventLog (table event_log) is flagged for auditing but has no "
        "primary key. The audit trail identifies each record by its primary key: add one "
        "(primary_key=True on its id column), or remove __audited__ = True."
    )
    assert str(table_error.value) == (
        "hyper_audit: table raw_log is flagged for auditing but has no primary key. The "
        "audit trail identifies each record by its primary key: add one (primary_key=True "
        "on its id column), or remove info={'audited': True}."
    )


def _queries_from_the_plugin(engine: sa.Engine, tables: int) -> tuple[int, list[str]]:
    metadata = sa.MetaData()
    for n in range(tables):
        sa.Table(
            f"t{n:03}",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            info={"audited": n % 2 == 0},
        )
    ours: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.startswith(PACKAGE_DIR):
                ours.append(statement)
                return
            frame = frame.f_back  # type: ignore[assignment]

    with engine.begin() as connection:
        metadata.create_all(connection)
        install(connection, *(f"t{n:03}" for n in range(tables) if n % 3 == 0))
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            upgrade, _ = autogenerate(connection, metadata)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    changes = [n for n in range(tables) if (n % 2 == 0) != (n % 3 == 0)]
    assert len(upgrade) == len(changes)
    return len(ours), upgrade


def test_catalog_is_read_in_a_constant_number_of_queries(engine: sa.Engine) -> None:
    few, upgrade = _queries_from_the_plugin(engine, 5)
    assert upgrade == [
        "op.enable_tracking('t002')",
        "op.disable_tracking('t003')",
        "op.enable_tracking('t004')",
    ]
    with engine.begin() as connection:
        connection.exec_driver_sql("drop schema public cascade; create schema public")
    many, _ = _queries_from_the_plugin(engine, 60)
    # The same few catalog queries for 5 tables as for 60 (none per table).
    assert few == many
    assert 1 <= few <= 4


# -- a real project: revision, upgrade, check, round trip --------------------------------

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Audited:
    __audited__ = True


class Account(Audited, Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Note(Base):
    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
"""


def history(connection: sa.Connection) -> list[tuple[str, str]]:
    return [
        (row.op, row.table_name)
        for row in connection.exec_driver_sql(
            "select op::text, table_name from audit.record_version order by id"
        )
    ]


def test_project_revision_upgrade_check_and_round_trip(tmp_path: Path, db_url: str) -> None:
    project = Project.create(tmp_path, db_url, MODELS)
    text = project.revision("accounts")
    assert migration_body(text, "upgrade") == [
        "op.install_audit()",
        "op.create_table('account',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.Column('name', sa.String(length=50), nullable=False),",
        "sa.PrimaryKeyConstraint('id')",
        ")",
        "op.enable_tracking('account')",
        "op.create_table('note',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.PrimaryKeyConstraint('id')",
        ")",
    ]
    assert migration_body(text, "downgrade") == [
        "op.drop_table('note')",
        "op.disable_tracking('account')",
        "op.drop_table('account')",
        "op.uninstall_audit(keep_history=True)",
    ]
    assert "import hyper_audit_alembic" not in text.replace(
        "from hyper_audit_alembic import op", ""
    )

    engine = sa.create_engine(db_url)
    try:
        project.upgrade()
        assert project.check() == "No new upgrade operations detected.\n"
        with engine.begin() as connection:
            assert tracked_tables(connection) == ["public.account"]
            connection.exec_driver_sql("insert into account (id, name) values (1, 'a')")
            connection.exec_driver_sql("insert into note (id) values (1)")

        project.downgrade("base")
        with engine.begin() as connection:
            assert tracked_tables(connection) == []
            assert sa.inspect(connection).get_table_names() == ["alembic_version"]
            assert history(connection) == [("INSERT", "account")]  # kept

        project.upgrade()
        with engine.begin() as connection:
            assert tracked_tables(connection) == ["public.account"]
            connection.exec_driver_sql("insert into account (id, name) values (2, 'b')")
            assert history(connection) == [("INSERT", "account"), ("INSERT", "account")]
        assert project.check() == "No new upgrade operations detected.\n"

        # The flag goes: the next migration stops tracking, and nothing else.
        project.set_models(MODELS.replace("__audited__ = True", "__audited__ = False"))
        text = project.revision("unaudit")
        assert migration_body(text, "upgrade") == ["op.disable_tracking('account')"]
        assert migration_body(text, "downgrade") == ["op.enable_tracking('account')"]
        project.upgrade()
        assert project.check() == "No new upgrade operations detected.\n"
        with engine.begin() as connection:
            assert tracked_tables(connection) == []
        project.downgrade("-1")
        with engine.begin() as connection:
            assert tracked_tables(connection) == ["public.account"]
    finally:
        engine.dispose()


# -- the loud failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    "plugins",
    [
        'autogenerate_plugins=["alembic.autogenerate.*"],',
        "",  # the option left out: Alembic's default list
        'autogenerate_plugins=["alembic.autogenerate.*", "~hyper_audit"],',
    ],
    ids=["listed-without", "default", "excluded"],
)
def test_flagged_models_without_the_plugin_fail_loudly(
    tmp_path: Path, db_url: str, plugins: str
) -> None:
    project = Project.create(tmp_path, db_url, MODELS)
    project.edit_env('autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"],', plugins)
    with pytest.raises(CommandError) as error:
        project.revision()
    assert str(error.value) == (
        "hyper_audit: model Account (table account) flagged for auditing, but the "
        "'hyper_audit' autogenerate plugin is not enabled, so no audit operations would be "
        "generated. In env.py, pass autogenerate_plugins=['alembic.autogenerate.*', "
        "'hyper_audit'] to context.configure() (the hyper_audit template does)."
    )
    assert list(project.versions.glob("*.py")) == []


def test_unflagged_models_without_the_plugin_are_fine(tmp_path: Path, db_url: str) -> None:
    project = Project.create(tmp_path, db_url, MODELS.replace("__audited__ = True", "pass"))
    project.edit_env('autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"],', "")
    text = project.revision()
    assert "op.create_table('account'," in text
    assert "audit" not in migration_body(text, "upgrade")


def test_flagged_models_on_sqlite_fail_clearly(tmp_path: Path) -> None:
    project = Project.create(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", MODELS)
    with pytest.raises(CommandError) as error:
        project.revision()
    assert str(error.value) == (
        "hyper_audit: model Account (table account) flagged for auditing, but the database "
        "is 'sqlite'; the audit trail needs PostgreSQL. Run autogenerate against "
        "PostgreSQL, or remove the __audited__ flags."
    )
    # Unflagged models on SQLite: the plugin stays out of the way.
    project.set_models(MODELS.replace("__audited__ = True", "pass"))
    assert "op.create_table('account'," in project.revision()
