"""Per-table tracking options (audit schema version 2): ``exclude`` and ``skip_unchanged``.

``__audited__ = {"exclude": [...], "skip_unchanged": True}``, ``info={"audited": {...}}``,
``op.enable_tracking(..., exclude=..., skip_unchanged=...)`` and ``op.alter_tracking``.
The options are trigger arguments after the key columns and an empty separator; a table
without options has exactly version 1's triggers. Exact audit rows, exact rendered text,
exact error text, on a real server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.util import CommandError
from alembic_project import Project, autogenerate, migration_body
from audit_helpers import Db, apply_sql, connect, offline_sql, record_id, run_online
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hyper_audit_alembic import sql
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration.catalog import read_audit_state
from hyper_audit_alembic.migration.ops import AlterTrackingOp, EnableTrackingOp
from hyper_audit_alembic.migration.options import TrackingOptions

TABLES = """
create table plain (id int primary key, v text, token text);
create table deferred (id int primary key deferrable initially immediate, v text, token text);
"""


def triggers(db: Db, table: str) -> list[tuple[str, bytes]]:
    return [
        (name, bytes(args))
        for name, args in db.rows(
            "select tgname::text, tgargs from pg_trigger where tgrelid = %s::regclass"
            " and tgname like 'audit%%' order by tgname",
            [table],
        )
    ]


def rows(db: Db) -> list[tuple[Any, ...]]:
    return [(r[0], r[1], r[2], r[5], r[6], r[7]) for r in db.audit_rows()]


@pytest.fixture
def tracked(engine: sa.Engine, db_url: str) -> Db:
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(TABLES)
    return Db(db_url)


def _writes(db: Db, table: str) -> None:
    db.run(f"insert into {table} values (1, 'a', 's1'), (2, 'b', 's2')")
    db.run(f"update {table} set token = 'new'")  # only an excluded column
    db.run(f"update {table} set v = v")  # the same values
    db.run(f"update {table} set v = 'c' where id = 1")
    db.run(f"update {table} set v = 'd', token = 'x'")  # several rows
    db.run(f"update {table} set id = id + 10 where id = 2")  # key change
    db.run(f"delete from {table}")


def _canonical(row: tuple[Any, ...]) -> str:
    return json.dumps([str(value) if isinstance(value, uuid.UUID) else value for value in row],
                      sort_keys=True)  # fmt: skip


@pytest.mark.parametrize("table", ["plain", "deferred"])
@pytest.mark.parametrize("skip_unchanged", [False, True])
def test_exclude_and_skip_unchanged_give_exact_rows(
    tracked: Db, engine: sa.Engine, table: str, skip_unchanged: bool
) -> None:
    db = tracked
    run_online(
        engine,
        lambda op: op.enable_tracking(table, exclude=["token"], skip_unchanged=skip_unchanged),
    )
    level = ["audit_row_change"] if table == "deferred" else [
        "audit_delete", "audit_insert", "audit_key_change", "audit_update"
    ]  # fmt: skip
    args = b"id\x00\x00exclude=token\x00" + (b"skip_unchanged\x00" if skip_unchanged else b"")
    assert triggers(db, table) == sorted([(n, args) for n in level] + [("audit_truncate", b"")])
    _writes(db, table)
    oid = db.oid(table)
    r1, r2, r12 = record_id(oid, "1"), record_id(oid, "2"), record_id(oid, "12")
    a1, b2 = {"id": 1, "v": "a"}, {"id": 2, "v": "b"}
    c1, d1, d2 = {"id": 1, "v": "c"}, {"id": 1, "v": "d"}, {"id": 2, "v": "d"}
    unchanged = [
        ("UPDATE", r1, r1, table, a1, a1),
        ("UPDATE", r2, r2, table, b2, b2),
    ]
    expected = [
        ("INSERT", r1, None, table, a1, None),
        ("INSERT", r2, None, table, b2, None),
        *([] if skip_unchanged else unchanged * 2),
        ("UPDATE", r1, r1, table, c1, a1),
        ("UPDATE", r1, r1, table, d1, c1),
        ("UPDATE", r2, r2, table, d2, b2),
        ("UPDATE", r12, r2, table, {"id": 12, "v": "d"}, d2),
        ("DELETE", None, r1, table, None, d1),
        ("DELETE", None, r12, table, None, {"id": 12, "v": "d"}),
    ]
    found = rows(db)
    # Statement level writes a statement's rows in no particular order: compare per statement.
    assert sorted(map(_canonical, found)) == sorted(map(_canonical, expected))
    assert [r[0] for r in found] == [r[0] for r in expected]
    db.close()


def test_no_options_keeps_the_version_1_triggers_and_the_one_argument_call(
    tracked: Db, engine: sa.Engine
) -> None:
    db = tracked
    run_online(engine, lambda op: op.enable_tracking("plain"))
    assert [args for _, args in triggers(db, "plain")] == [b"id\x00"] * 3 + [b"", b"id\x00"]
    assert "perform audit.enable_tracking(target::regclass);" in EnableTrackingOp(
        "plain"
    ).statement(None)  # type: ignore[arg-type]
    # Options, then enable_tracking without options: a tracked table keeps its options
    # (also when the event trigger re-syncs a changed key); alter_tracking clears them.
    run_online(engine, lambda op: op.enable_tracking("plain", exclude=["token"]))
    run_online(engine, lambda op: op.enable_tracking("plain"))
    db.run("alter table plain rename column id to key")
    assert triggers(db, "plain")[0] == ("audit_delete", b"key\x00\x00exclude=token\x00")
    with engine.connect() as connection:
        assert read_audit_state(connection).options_of("public", "plain") == TrackingOptions(
            exclude=("token",)
        )
        assert read_audit_state(connection).tracked[("public", "plain")] == ("key",)
    run_online(engine, lambda op: op.alter_tracking("plain", existing_exclude=["token"]))
    assert [args for _, args in triggers(db, "plain")] == [b"key\x00"] * 3 + [b"", b"key\x00"]
    db.run("insert into plain values (1, 'a', 's')")
    assert rows(db)[-1][4] == {"key": 1, "v": "a", "token": "s"}
    db.close()


def test_primary_key_columns_cannot_be_excluded(tracked: Db, engine: sa.Engine) -> None:
    db = tracked
    error = db.error("select audit.enable_tracking('plain', '{id, token}', false)")
    assert str(error).splitlines()[0] == (
        "audit.enable_tracking: cannot exclude id of table public.plain: primary-key columns "
        "identify each record"
    )
    assert (error.pgcode, error.diag.message_hint) == (
        "22023",  # invalid_parameter_value
        "Leave the primary-key columns out of exclude.",
    )
    error = db.error("select audit.enable_tracking('plain', '{nope}', false)")
    assert str(error).splitlines()[0] == (
        "audit.enable_tracking: cannot exclude nope: table public.plain has no such column"
    )
    assert (error.pgcode, error.diag.message_hint) == ("42703", None)  # undefined_column
    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(engine, lambda op: op.enable_tracking("plain", exclude=["id"]))
    error = refused.value.orig
    assert (error.pgcode, error.diag.message_primary) == (  # type: ignore[union-attr]
        "22023",
        "audit.enable_tracking: cannot exclude id of table public.plain: primary-key columns "
        "identify each record",
    )

    class Base(DeclarativeBase):
        pass

    class Plain(Base):
        __tablename__ = "plain"
        __audited__ = {"exclude": ["id"]}
        id: Mapped[int] = mapped_column(primary_key=True)

    with engine.begin() as connection, pytest.raises(CommandError) as caught:
        autogenerate(connection, Base.metadata)
    assert str(caught.value) == (
        "hyper_audit: model Plain (table plain): __audited__ = {'exclude': ['id']} excludes "
        "primary-key column(s) id: the audit trail identifies each record by its primary "
        "key, so they are always recorded. Remove them from exclude."
    )
    db.close()


#: The model classes made by _token_models (mapper registries hold classes weakly).
_KEEP: list[type] = []


def _token_models(flag: object) -> type[DeclarativeBase]:
    class Base(DeclarativeBase):
        pass

    class Token(Base):
        __tablename__ = "token"
        __audited__ = flag
        id: Mapped[int] = mapped_column(primary_key=True)
        token: Mapped[str]

    _KEEP.append(Token)
    sa.Table(
        "core_token",
        Base.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("secret", sa.Text),
        info={"audited": {"exclude": ["secret"]}},
    )
    return Base


def _unflagged_token_metadata() -> sa.MetaData:
    """The tables of _token_models without their flags."""
    unflagged = sa.MetaData()
    sa.Table("core_token", unflagged, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("secret", sa.Text))  # fmt: skip
    sa.Table("token", unflagged, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("token", sa.String, nullable=False))  # fmt: skip
    return unflagged


def test_autogenerate_renders_options_and_one_alter_op(engine: sa.Engine) -> None:
    base = _token_models({"exclude": ["token"], "skip_unchanged": True})
    with engine.begin() as connection:
        upgrade, downgrade = autogenerate(connection, base.metadata)
        assert "op.enable_tracking('token', exclude=['token'], skip_unchanged=True)" in upgrade
        assert "op.enable_tracking('core_token', exclude=['secret'])" in upgrade
        assert "op.disable_tracking('token')" in downgrade
        base.metadata.create_all(connection)
        operations = Operations(MigrationContext.configure(connection))
        operations.install_audit()  # type: ignore[attr-defined]
        operations.enable_tracking("token")  # type: ignore[attr-defined]
        operations.enable_tracking("core_token", exclude=["secret"])  # type: ignore[attr-defined]
        assert autogenerate(connection, base.metadata) == (
            [
                "op.alter_tracking('token', exclude=['token'], skip_unchanged=True, "
                "existing_exclude=[], existing_skip_unchanged=False)"
            ],
            [
                "op.alter_tracking('token', exclude=[], skip_unchanged=False, "
                "existing_exclude=['token'], existing_skip_unchanged=True)"
            ],
        )
        # Options on both already: nothing to do.
        operations.alter_tracking(  # type: ignore[attr-defined]
            "token", exclude=["token"], skip_unchanged=True
        )
        assert autogenerate(connection, base.metadata) == ([], [])
        # The flags go: tracking stops, and the downgrade restores the options.
        upgrade, downgrade = autogenerate(connection, _unflagged_token_metadata())
        assert sorted(upgrade) == [
            "op.disable_tracking('core_token')",
            "op.disable_tracking('token')",
        ]
        assert sorted(downgrade) == [
            "op.enable_tracking('core_token', exclude=['secret'])",
            "op.enable_tracking('token', exclude=['token'], skip_unchanged=True)",
        ]


MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Token(Base):
    __tablename__ = "token"
    __audited__ = FLAG

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str]
"""


def test_project_alter_round_trip_and_check(tmp_path: Path, db_url: str) -> None:
    project = Project.create(tmp_path, db_url, MODELS.replace("FLAG", "True"))
    project.revision("token")
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    project.set_models(MODELS.replace("FLAG", '{"exclude": ["token"], "skip_unchanged": True}'))
    text = project.revision("options")
    assert migration_body(text, "upgrade") == [
        "op.alter_tracking('token', exclude=['token'], skip_unchanged=True, "
        "existing_exclude=[], existing_skip_unchanged=False)"
    ]
    assert migration_body(text, "downgrade") == [
        "op.alter_tracking('token', exclude=[], skip_unchanged=False, "
        "existing_exclude=['token'], existing_skip_unchanged=True)"
    ]
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    with connect(db_url) as db:
        db.run("insert into token values (1, 'secret')")
        db.run("update token set token = 'other'")
        assert [(r[0], r[4]) for r in rows(db)] == [("INSERT", {"id": 1})]
    project.downgrade("-1")
    with connect(db_url) as db:
        assert [args for _, args in triggers(db, "token")] == [b"id\x00"] * 3 + [b"", b"id\x00"]
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"


def test_offline_sql_equals_online(
    engine: sa.Engine, db_url: str, pg_server: Any, postgresql: Any
) -> None:
    def script(op: Any) -> None:
        op.enable_tracking("plain", exclude=["token", "v"], skip_unchanged=True)
        op.alter_tracking(
            "deferred", exclude=["token"], existing_exclude=[], existing_skip_unchanged=False
        )

    text = offline_sql(script)
    assert (
        text.count("perform audit.enable_tracking(target::regclass, exclude, skip_unchanged)") == 2
    )
    assert "    exclude constant text[] := array['token', 'v']::text[];\n" in text
    assert "    exclude constant text[] := array['token']::text[];\n" in text
    assert text.count("    skip_unchanged constant boolean := true;\n") == 1
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(TABLES)
        db.run("create schema online")
    offline_db = Db(db_url)
    try:
        apply_sql(pg_server, postgresql.info.dbname, text)
        offline = {t: triggers(offline_db, t) for t in ("plain", "deferred")}
        offline_db.run("select audit.disable_tracking('plain'), audit.disable_tracking('deferred')")
        run_online(engine, script)
        assert {t: triggers(offline_db, t) for t in ("plain", "deferred")} == offline
        assert offline["plain"][0] == ("audit_delete", b"id\x00\x00exclude=token\x00exclude=v\x00"
                                       b"skip_unchanged\x00")  # fmt: skip
    finally:
        offline_db.close()
    assert AlterTrackingOp("t", exclude=["b", "a", "a"]).exclude == ["a", "b"]


def test_upgrade_from_1_keeps_tracking_and_downgrade_restores_version_1(
    engine: sa.Engine, db_url: str
) -> None:
    with engine.begin() as connection:
        for statement in sql.released_statements(1):
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})
    with connect(db_url) as db:
        db.run(TABLES)
        db.run("select audit.enable_tracking('plain'), audit.enable_tracking('deferred')")
        before = {t: triggers(db, t) for t in ("plain", "deferred")}
        run_online(engine, lambda op: op.upgrade_audit(from_version=1, to_version=2))
        assert {t: triggers(db, t) for t in ("plain", "deferred")} == before
        with engine.connect() as connection:
            assert read_audit_state(connection).options == {}
        db.run("insert into plain values (1, 'a', 's')")
        run_online(engine, lambda op: op.enable_tracking("plain", exclude=["token"]))
        run_online(
            engine, lambda op: op.enable_tracking("deferred", exclude=["v"], skip_unchanged=True)
        )
        db.run("update plain set v = 'b'")
        run_online(engine, lambda op: op.downgrade_audit(from_version=2, to_version=1))
        assert {t: triggers(db, t) for t in ("plain", "deferred")} == before
        assert db.one("select version from audit.schema_version") == 1
        db.run("update plain set v = 'c'")
        oid = db.oid("plain")
        assert [r[4] for r in rows(db)] == [
            {"id": 1, "v": "a", "token": "s"},
            {"id": 1, "v": "b"},
            {"id": 1, "v": "c", "token": "s"},
        ]
        assert rows(db)[-1][1] == record_id(oid, "1")


# --- on_replica (audit schema version 3): record what a logical replication subscriber
# applies. The replication itself is tested in test_trust.py (class 6).

ALWAYS_ROW_TRIGGERS = [
    ("audit_row_change", b"id\x00\x00on_replica\x00", "A"),
    ("audit_truncate", b"", "A"),
]


def enabled_triggers(db: Db, table: str) -> list[tuple[str, bytes, str]]:
    return [
        (name, bytes(args), enabled)
        for name, args, enabled in db.rows(
            "select tgname::text, tgargs, tgenabled::text from pg_trigger"
            " where tgrelid = %s::regclass and not tgisinternal order by tgname",
            [table],
        )
    ]


def test_autogenerate_renders_on_replica(engine: sa.Engine) -> None:
    base = _token_models({"on_replica": True})
    base.metadata.tables["core_token"].info["audited"] = {
        "exclude": ["secret"],
        "on_replica": True,
    }
    with engine.begin() as connection:
        upgrade, downgrade = autogenerate(connection, base.metadata)
        assert "op.enable_tracking('token', on_replica=True)" in upgrade
        assert "op.enable_tracking('core_token', exclude=['secret'], on_replica=True)" in upgrade
        base.metadata.create_all(connection)
        operations = Operations(MigrationContext.configure(connection))
        operations.install_audit()  # type: ignore[attr-defined]
        operations.enable_tracking("token")  # type: ignore[attr-defined]
        operations.enable_tracking(  # type: ignore[attr-defined]
            "core_token", exclude=["secret"], on_replica=True
        )
        assert autogenerate(connection, base.metadata) == (
            [
                "op.alter_tracking('token', exclude=[], skip_unchanged=False, on_replica=True, "
                "existing_exclude=[], existing_skip_unchanged=False, existing_on_replica=False)"
            ],
            [
                "op.alter_tracking('token', exclude=[], skip_unchanged=False, on_replica=False, "
                "existing_exclude=[], existing_skip_unchanged=False, existing_on_replica=True)"
            ],
        )
        operations.alter_tracking("token", on_replica=True)  # type: ignore[attr-defined]
        assert autogenerate(connection, base.metadata) == ([], [])
        upgrade, downgrade = autogenerate(connection, _unflagged_token_metadata())
        assert sorted(upgrade) == [
            "op.disable_tracking('core_token')",
            "op.disable_tracking('token')",
        ]
        assert sorted(downgrade) == [
            "op.enable_tracking('core_token', exclude=['secret'], on_replica=True)",
            "op.enable_tracking('token', on_replica=True)",
        ]


def test_project_on_replica_round_trip_and_check(tmp_path: Path, db_url: str) -> None:
    project = Project.create(tmp_path, db_url, MODELS.replace("FLAG", '{"on_replica": True}'))
    text = project.revision("token")
    assert "op.enable_tracking('token', on_replica=True)" in migration_body(text, "upgrade")
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    with connect(db_url) as db:
        assert enabled_triggers(db, "token") == ALWAYS_ROW_TRIGGERS
    project.set_models(MODELS.replace("FLAG", "True"))
    text = project.revision("off")
    assert migration_body(text, "upgrade") == [
        "op.alter_tracking('token', exclude=[], skip_unchanged=False, on_replica=False, "
        "existing_exclude=[], existing_skip_unchanged=False, existing_on_replica=True)"
    ]
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    with connect(db_url) as db:
        assert {enabled for _, _, enabled in enabled_triggers(db, "token")} == {"O"}
    project.downgrade("-1")
    with connect(db_url) as db:
        assert enabled_triggers(db, "token") == ALWAYS_ROW_TRIGGERS


def test_on_replica_offline_sql_equals_online(
    engine: sa.Engine, db_url: str, pg_server: Any, postgresql: Any
) -> None:
    def script(op: Any) -> None:
        op.enable_tracking("plain", on_replica=True)

    text = offline_sql(script)
    assert "    on_replica constant boolean := true;\n" in text
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(TABLES)
        apply_sql(pg_server, postgresql.info.dbname, text)
        offline = enabled_triggers(db, "plain")
        db.run("select audit.disable_tracking('plain')")
        run_online(engine, script)
        assert enabled_triggers(db, "plain") == offline == ALWAYS_ROW_TRIGGERS


def test_on_replica_of_the_op_must_be_a_bool() -> None:
    with pytest.raises(AuditOperationError) as caught:
        EnableTrackingOp("t", on_replica="yes")  # type: ignore[arg-type]
    assert str(caught.value) == "hyper_audit: on_replica must be True or False, not 'yes'"


def test_on_replica_of_a_model_must_be_a_bool(engine: sa.Engine) -> None:
    base = _token_models({"on_replica": 1})
    with engine.begin() as connection, pytest.raises(CommandError) as flagged:
        autogenerate(connection, base.metadata)
    assert str(flagged.value) == (
        "hyper_audit: model Token (table token): __audited__ = {'on_replica': 1}: "
        "on_replica must be True or False, not 1"
    )


def test_on_replica_on_version_2_says_to_upgrade(engine: sa.Engine, db_url: str) -> None:
    with engine.begin() as connection:
        for statement in sql.released_statements(2):
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})
    with connect(db_url) as db:
        db.run(TABLES)
    with pytest.raises(sa.exc.DBAPIError) as caught:
        run_online(engine, lambda op: op.enable_tracking("plain", on_replica=True))
    error = caught.value.orig
    assert (error.pgcode, error.diag.message_primary, error.diag.message_hint) == (  # type: ignore[union-attr]
        "42883",
        "op.enable_tracking: on_replica needs audit schema version 3, so plain cannot be"
        " tracked with it",
        "Run op.upgrade_audit(from_version=2, to_version=3) first.",
    )
