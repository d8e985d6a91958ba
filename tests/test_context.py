"""Who and why: actor, context and transaction id on every audit row (audit schema v2).

The audit schema is installed with ``sql.install_statements()`` (version 1, then the
upgrade to version 2); the upgrade and downgrade are run as their statements. The ops
that emit them are tested with the lifecycle.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from audit_helpers import SUPABASE_AUTH, catalog_snapshot, connect, extra_database
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import (
    RecordVersion,
    audit_context,
    context_history,
    history,
    sql,
    transaction_history,
)
from hyper_audit_alembic.cli import main
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

ROLE = "postgres"  # the role the tests log in as

TABLE = [
    "create table item (id int primary key, name text not null)",
    "select audit.enable_tracking('item')",
]

SETTINGS = sa.text(
    "select current_setting('hyper_audit.actor', true),"
    " current_setting('hyper_audit.context', true)"
)
BACKEND_PID = sa.text("select pg_backend_pid()")


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


def run(engine: sa.Engine, statements: Iterable[str]) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def versions(engine: sa.Engine) -> list[RecordVersion]:
    with Session(engine, expire_on_commit=False) as session:
        rv = RecordVersion
        return list(session.scalars(sa.select(rv).order_by(rv.id)))


def who(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """(op, item id, actor, context) of each audit row."""
    return [(str(v.op), (v.values or {}).get("id"), v.actor, v.context) for v in versions(engine)]


def transaction_ids(engine: sa.Engine) -> list[int | None]:
    return [v.transaction_id for v in versions(engine)]


@pytest.fixture
def audited(engine: sa.Engine) -> sa.Engine:
    run(engine, [*sql.install_statements(), *TABLE])
    return engine


# --- audit_context -----------------------------------------------------------------------


def test_rows_carry_the_actor_the_context_and_the_transaction_id(audited: sa.Engine) -> None:
    context = {"request_id": "r-1", "endpoint": "/items"}
    with Session(audited) as session:
        with audit_context(session, actor="user:42", **context):
            session.add(Item(id=1, name="a"))
            session.flush()
            session.execute(sa.text("update item set name = 'b' where id = 1"))
            xid = int(session.scalar(sa.text("select pg_current_xact_id()::text")))
        session.commit()
        found = history(session, Item, 1)
        assert [(v.op, v.actor, v.context, v.transaction_id) for v in found] == [
            ("INSERT", "user:42", context, xid),
            ("UPDATE", "user:42", context, xid),
        ]
        assert [v.id for v in transaction_history(session, xid)] == [v.id for v in found]
        assert transaction_history(session, xid + 1000) == []
        assert [v.id for v in context_history(session, {"request_id": "r-1"})] == [
            v.id for v in found
        ]
        assert context_history(session, {"request_id": "r-2"}) == []
        assert context_history(session, {"request_id": "r-1"}, until=found[0].ts) == []


def test_values_are_passed_as_they_are(audited: sa.Engine) -> None:
    actor = "o'brien'); delete from item; -- :name %s"
    context = {"why": "50% off :name $1 $$ ü 東京", "ids": [1, 2], "user": uuid.UUID(int=5)}
    with Session(audited) as session:
        with audit_context(session, actor, **context):
            session.add(Item(id=1, name="a"))
        session.commit()
    assert who(audited) == [("INSERT", 1, actor, {**context, "user": str(uuid.UUID(int=5))})]


def test_without_a_context_the_role_the_session_acts_as_is_recorded(audited: sa.Engine) -> None:
    """Not current_user: the triggers run SECURITY DEFINER, as the audit owner."""
    role = f"clerk_{uuid.uuid4().hex[:10]}"
    run(audited, [f"create role {role}", f"grant select, insert, update on item to {role}"])
    try:
        with Session(audited) as session:
            session.add(Item(id=1, name="a"))
            session.commit()
            session.execute(sa.text(f"set local role {role}"))  # as PostgREST does
            session.execute(sa.text("update item set name = 'b'"))
            session.commit()
            with audit_context(session, actor="user:7"):
                session.execute(sa.text(f"set local role {role}"))
                session.execute(sa.text("update item set name = 'c'"))
            session.commit()
            session.execute(sa.text("update item set name = 'd'"))
            session.commit()
        assert who(audited) == [
            ("INSERT", 1, ROLE, None),
            ("UPDATE", 1, role, None),
            ("UPDATE", 1, "user:7", None),
            ("UPDATE", 1, ROLE, None),
        ]
    finally:
        run(audited, [f"drop owned by {role}", f"drop role {role}"])


def test_nothing_leaks_into_the_next_transaction_on_a_pooled_connection(db_url: str) -> None:
    engine = sa.create_engine(db_url, pool_size=1, max_overflow=0)
    try:
        run(engine, [*sql.install_statements(), *TABLE])
        with Session(engine) as session:
            with audit_context(session, actor="user:42", request_id="r-1"):
                session.add(Item(id=1, name="a"))
                pid = session.scalar(BACKEND_PID)
                session.commit()
        with Session(engine) as session:
            assert session.scalar(BACKEND_PID) == pid  # the same pooled connection
            assert session.execute(SETTINGS).one() == ("", "")
            session.add(Item(id=2, name="b"))
            session.commit()
        # A block left by an error: the values go with the transaction's rollback.
        with Session(engine) as session:
            with pytest.raises(RuntimeError) as raised, audit_context(session, actor="user:43"):
                session.add(Item(id=3, name="c"))
                session.flush()
                raise RuntimeError("the request failed")
            assert str(raised.value) == "the request failed"  # the block's own error, as it was
            session.rollback()
            assert session.scalar(BACKEND_PID) == pid
            assert session.execute(SETTINGS).one() == ("", "")
            session.add(Item(id=4, name="d"))
            session.commit()
        with engine.connect() as connection:
            with audit_context(connection, actor="job"):
                connection.exec_driver_sql("insert into item values (5, 'e')")
                connection.commit()
        with engine.connect() as connection:
            assert connection.scalar(BACKEND_PID) == pid
            assert connection.execute(SETTINGS).one() == ("", "")
        assert who(engine) == [
            ("INSERT", 1, "user:42", {"request_id": "r-1"}),
            ("INSERT", 2, ROLE, None),
            ("INSERT", 4, ROLE, None),
            ("INSERT", 5, "job", None),
        ]
    finally:
        engine.dispose()


def test_transactions_begun_in_the_block_carry_the_context(audited: sa.Engine) -> None:
    with Session(audited) as session:
        with audit_context(session, actor="user:42", request_id="r-2"):
            session.add(Item(id=1, name="a"))
            session.commit()
            session.add(Item(id=2, name="b"))
            session.commit()
            session.add(Item(id=3, name="c"))  # flushed as the block ends
        assert session.execute(SETTINGS).one() == ("", "")
        session.add(Item(id=4, name="d"))  # after the block, in the same transaction
        session.commit()
    context = {"request_id": "r-2"}
    assert who(audited) == [
        ("INSERT", 1, "user:42", context),
        ("INSERT", 2, "user:42", context),
        ("INSERT", 3, "user:42", context),
        ("INSERT", 4, ROLE, None),
    ]
    first, second, third, fourth = transaction_ids(audited)
    assert len({first, second, third}) == 3
    assert third == fourth


def test_a_transaction_begun_in_the_block_or_before_it(audited: sa.Engine) -> None:
    with Session(audited) as session:
        with audit_context(session, actor="user:42"), session.begin():
            session.add(Item(id=1, name="a"))
    with audited.connect() as connection:
        with audit_context(connection, actor="job"), connection.begin():
            connection.exec_driver_sql("insert into item values (2, 'b')")
    with Session(audited) as session, session.begin():
        with audit_context(session, actor="user:43"):
            session.add(Item(id=3, name="c"))
    with audited.begin() as connection, audit_context(connection, actor="job:2"):
        connection.exec_driver_sql("insert into item values (4, 'd')")
    assert who(audited) == [
        ("INSERT", 1, "user:42", None),
        ("INSERT", 2, "job", None),
        ("INSERT", 3, "user:43", None),
        ("INSERT", 4, "job:2", None),
    ]


def test_a_connection_of_an_engine_with_execution_options(audited: sa.Engine) -> None:
    # engine.execution_options(...) makes an OptionEngine; before SQLAlchemy 2.0.38 its
    # connections refused event listeners (the reason for the version floor).
    translated = audited.execution_options(schema_translate_map={"app": "public"})
    with translated.begin() as connection, audit_context(connection, actor="job:options"):
        connection.execute(sa.text("insert into item values (1, 'x')"))
    assert who(audited) == [("INSERT", 1, "job:options", None)]


def test_a_connection_and_blocks_inside_blocks(audited: sa.Engine) -> None:
    def insert(connection: sa.Connection, key: int) -> None:
        connection.execute(sa.text("insert into item values (:id, 'x')"), {"id": key})

    with audited.connect() as connection:
        with audit_context(connection, actor="job:nightly", reason="cleanup"):
            insert(connection, 1)
            connection.commit()
            insert(connection, 2)
            with audit_context(connection, step=2):
                insert(connection, 3)
                with audit_context(connection, actor="job:inner", reason="override"):
                    insert(connection, 4)
            connection.rollback()  # 2, 3 and 4 are gone; the next transaction still carries
            insert(connection, 5)
        insert(connection, 6)
        connection.commit()
    outer = {"reason": "cleanup"}
    assert who(audited) == [
        ("INSERT", 1, "job:nightly", outer),
        ("INSERT", 5, "job:nightly", outer),
        ("INSERT", 6, ROLE, None),
    ]

    with audited.connect() as connection:
        with audit_context(connection, actor="job:nightly", reason="cleanup"):
            with audit_context(connection, step=2):
                insert(connection, 13)
                with audit_context(connection, actor="job:inner", reason="override"):
                    insert(connection, 14)
                insert(connection, 15)
            insert(connection, 16)
        connection.commit()
    assert who(audited)[3:] == [
        ("INSERT", 13, "job:nightly", {"reason": "cleanup", "step": 2}),
        ("INSERT", 14, "job:inner", {"reason": "override", "step": 2}),
        ("INSERT", 15, "job:nightly", {"reason": "cleanup", "step": 2}),
        ("INSERT", 16, "job:nightly", outer),
    ]


def test_async_session_and_connection(audited: sa.Engine) -> None:
    from sqlalchemy.ext.asyncio import (
        AsyncSession,
        async_scoped_session,
        async_sessionmaker,
        create_async_engine,
    )

    async def write() -> None:
        engine = create_async_engine(audited.url.set(drivername="postgresql+asyncpg"))
        try:
            async with AsyncSession(engine) as session:
                async with audit_context(session, actor="user:42", request_id="r-5"):
                    session.add(Item(id=1, name="a"))
                    await session.commit()
                    session.add(Item(id=2, name="b"))  # flushed as the block ends
                await session.commit()
                with pytest.raises(TypeError) as not_async:
                    with audit_context(session, actor="x"):
                        pass
                assert str(not_async.value) == (
                    "audit_context: use 'async with audit_context(...)' for an AsyncSession or "
                    "an AsyncConnection"
                )
            async with engine.connect() as connection:
                async with audit_context(connection, actor="worker"):
                    await connection.execute(sa.text("insert into item values (3, 'c')"))
                    await connection.commit()
                    await connection.execute(sa.text("insert into item values (4, 'd')"))
                    await connection.commit()
                await connection.execute(sa.text("insert into item values (5, 'e')"))
                await connection.commit()
            scoped = async_scoped_session(
                async_sessionmaker(engine), scopefunc=asyncio.current_task
            )
            async with audit_context(scoped, actor="scoped"):
                scoped.add(Item(id=6, name="f"))
            await scoped.commit()
            await scoped.remove()
            with pytest.raises(TypeError) as refused:
                async with audit_context(engine, actor="x"):
                    pass
            assert str(refused.value) == (
                "audit_context: pass an AsyncSession or an AsyncConnection, not an "
                "AsyncEngine: the actor and context belong to a transaction "
                "(async with engine.begin() as connection: ...)"
            )
        finally:
            await engine.dispose()

    asyncio.run(write())
    context = {"request_id": "r-5"}
    assert who(audited) == [
        ("INSERT", 1, "user:42", context),
        ("INSERT", 2, "user:42", context),
        ("INSERT", 3, "worker", None),
        ("INSERT", 4, "worker", None),
        ("INSERT", 5, ROLE, None),
        ("INSERT", 6, "scoped", None),
    ]


def test_what_audit_context_refuses(audited: sa.Engine) -> None:
    with pytest.raises(TypeError) as raised:
        audit_context(audited, actor="x")
    assert str(raised.value) == (
        "audit_context: pass a Session or a Connection, not an Engine: the actor and "
        "context belong to a transaction (with engine.begin() as connection: ...)"
    )
    with pytest.raises(TypeError) as raised:
        audit_context(None, actor=42)  # type: ignore[arg-type]
    assert str(raised.value) == "audit_context: actor must be a str or None, not 42"
    with pytest.raises(TypeError) as raised:
        with audit_context("postgresql://", actor="x"):
            pass
    assert str(raised.value) == (
        "audit_context: pass a Session, a Connection, an AsyncSession or an "
        "AsyncConnection, not str"
    )
    autocommit = audited.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection, pytest.raises(ValueError) as error:
        with audit_context(connection, actor="x"):
            pass
    assert str(error.value) == (
        "audit_context: the connection is in AUTOCOMMIT mode, where each statement is a "
        "transaction of its own, so no transaction can carry the actor and context; "
        "run the changes in a transaction (the default isolation level)"
    )
    with Session(autocommit) as session, pytest.raises(ValueError) as session_error:
        with audit_context(session, actor="x"):
            pass
    assert str(session_error.value) == str(error.value)


# --- Supabase --------------------------------------------------------------------------------


def test_supabase_auth_columns_keep_working(engine: sa.Engine) -> None:
    run(engine, [SUPABASE_AUTH, *sql.install_statements(), *TABLE])
    alice = uuid.UUID("0b7c8c4a-6a59-4d8e-9d6f-3f1d2a2b1c01")
    claims = sa.text(
        "select set_config('request.jwt.claim.sub', :sub, true),"
        " set_config('request.jwt.claim.role', 'authenticated', true)"
    )
    with Session(engine) as session:
        with audit_context(session, actor="user:42", request_id="r-6"):
            session.execute(claims, {"sub": str(alice)})
            session.add(Item(id=1, name="a"))
        session.commit()
        session.execute(claims, {"sub": ""})
        session.execute(sa.text("update item set name = 'b'"))
        session.commit()
    with engine.connect() as connection:
        assert connection.exec_driver_sql(
            "select op::text, actor, context, auth_uid, auth_role from audit.record_version"
            " order by id"
        ).all() == [
            ("INSERT", "user:42", {"request_id": "r-6"}, alice, "authenticated"),
            ("UPDATE", ROLE, None, None, "authenticated"),
        ]


# --- The upgrade and the downgrade ----------------------------------------------------------


def test_upgrade_from_version_1_keeps_the_rows(engine: sa.Engine) -> None:
    run(engine, [*sql.released_statements(1), *TABLE])
    run(engine, ["insert into item values (1, 'old')", "update item set name = 'older'"])
    run(engine, sql.upgrade_statements(1, 2))
    with Session(engine) as session:
        with audit_context(session, actor="user:42", request_id="r-7"):
            session.execute(sa.text("update item set name = 'new'"))
        session.commit()
        found = history(session, Item, 1)
        assert session.scalar(sa.text("select version from audit.schema_version")) == 2
    assert [(v.op, v.record, v.actor, v.context, v.transaction_id is None) for v in found] == [
        ("INSERT", {"id": 1, "name": "old"}, None, None, True),
        ("UPDATE", {"id": 1, "name": "older"}, None, None, True),
        ("UPDATE", {"id": 1, "name": "new"}, "user:42", {"request_id": "r-7"}, False),
    ]


def test_the_history_command_asks_for_the_upgrade(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(engine, [*sql.released_statements(1), *TABLE, "insert into item values (1, 'a')"])
    url = engine.url.render_as_string(hide_password=False)
    assert main(["history", "--url", url, "item", "1"]) == 1
    assert capsys.readouterr().err == (
        "error: the audit trail in this database is older than audit schema version 2: "
        "upgrade it (op.upgrade_audit() in a migration) to read it here\n"
    )
    run(engine, sql.upgrade_statements(1, 2))
    run(engine, ["update audit.record_version set ts = '2024-05-01 10:00:00+00'"])
    monkeypatch.setenv("PGTZ", "UTC")
    assert main(["history", "--url", url, "item", "1"]) == 0
    assert capsys.readouterr().out == (
        "item (id) = (1): 1 change\n"
        "ts                         op      actor  context  changes\n"
        "2024-05-01 10:00:00+00:00  INSERT" + " " * 18 + 'id=1, name="a"\n'
    )


def test_fresh_upgraded_and_downgraded_catalogs(
    pg_server: ThrowawayPostgres, engine: sa.Engine, db_url: str
) -> None:
    """A fresh install equals an upgraded version 1; a downgrade gives version 1's
    catalog plus the three columns (from version 2), whose recorded values stay."""
    other = f"{sa.make_url(db_url).database}_other"
    with extra_database(pg_server, other):
        other_url = pg_server.url(other)
        other_engine = sa.create_engine(other_url)
        try:
            run(other_engine, [*sql.released_statements(1), *TABLE])
            with connect(other_url) as db:
                version_1 = catalog_snapshot(db)
            run(other_engine, sql.upgrade_statements(1, sql.SCHEMA_VERSION))
            with connect(other_url) as db:
                upgraded = catalog_snapshot(db)
        finally:
            other_engine.dispose()

    run(engine, [*sql.install_statements(), *TABLE])
    with connect(db_url) as db:
        assert catalog_snapshot(db) == upgraded
        run(engine, sql.install_statements())  # installing again changes nothing
        assert catalog_snapshot(db) == upgraded
        assert upgraded["schema_version"] == [(sql.SCHEMA_VERSION,)]
        assert [c[2:] for c in upgraded["columns"] if c[3] in ("actor", "context")] == [
            (
                11,
                "actor",
                "text",
                False,
                "COALESCE(NULLIF(current_setting('hyper_audit.actor'::text, true), ''::text), "
                "NULLIF(current_setting('role'::text), 'none'::text), (SESSION_USER)::text)",
            ),
            (
                12,
                "context",
                "jsonb",
                False,
                "(NULLIF(current_setting('hyper_audit.context'::text, true), ''::text))::jsonb",
            ),
        ]
        assert (
            "CREATE INDEX record_version_transaction_id ON audit.record_version USING btree"
            " (transaction_id) WHERE (transaction_id IS NOT NULL)",
        ) in upgraded["indexes"]

        with Session(engine) as session:
            with audit_context(session, actor="user:42", request_id="r-8"):
                session.add_all([Item(id=1, name="a"), Item(id=2, name="b")])
            session.commit()
            session.execute(sa.text("delete from item where id = 2"))
            session.commit()
        everything = "select * from audit.record_version order by id"
        before = db.rows(everything)
        assert [row[-3:-1] for row in before] == [
            ("user:42", {"request_id": "r-8"}),
            ("user:42", {"request_id": "r-8"}),
            (ROLE, None),
        ]

        run(engine, sql.downgrade_statements(sql.SCHEMA_VERSION, 1))
        assert db.rows(everything) == before
        downgraded = catalog_snapshot(db)
        v2_columns = [c for c in downgraded["columns"] if c[1] == "record_version" and c[3] in KEPT]
        assert [c[2:] for c in v2_columns] == [
            (11, "actor", "text", False, None),
            (12, "context", "jsonb", False, None),
            (13, "transaction_id", "xid8", False, None),
        ]
        downgraded["columns"] = [c for c in downgraded["columns"] if c not in v2_columns]
        # The labels SNAPSHOT (version 4) and REDACT (version 5) stay, unused: PostgreSQL
        # cannot remove an enum label.
        assert downgraded["types"] == [
            (
                "audit",
                "operation",
                "e",
                ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "SNAPSHOT", "REDACT"],
            )
        ]
        downgraded["types"] = version_1["types"]
        # The key-change conditions keep the body of version 3 (binary images, which
        # version 1's and 2's triggers use just as well): the same functions otherwise.
        conditions = [f for f in downgraded["functions"] if f[1].startswith("key_changed_")]
        assert [f[3].split("$function$")[1] for f in conditions] == [
            "select pg_catalog.record_image_ne(row((old_row).id), row((new_row).id))"
        ]
        assert without_condition_bodies(downgraded) == without_condition_bodies(version_1)

        run(engine, ["insert into item values (3, 'c')"])  # version 1 fills no actor
        assert db.rows("select actor, context, transaction_id from audit.record_version")[-1] == (
            None,
            None,
            None,
        )
        run(engine, sql.upgrade_statements(1, sql.SCHEMA_VERSION))
        assert db.rows(everything)[: len(before)] == before


KEPT = ("actor", "context", "transaction_id")


def without_condition_bodies(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The catalog snapshot without the definitions and volatility of the key-change
    conditions (``audit.key_changed_*``), which a downgrade from version 3 keeps."""
    return {
        **snapshot,
        "functions": [
            (*f[:3], *f[4:6], *f[7:]) if f[1].startswith("key_changed_") else f
            for f in snapshot["functions"]
        ],
    }


def test_upgrade_of_a_compressed_hypertable(ts_url: str) -> None:
    """TimescaleDB: the columns are added to compressed chunks too (skipped without it)."""
    engine = sa.create_engine(ts_url)
    try:
        run(engine, ["create extension timescaledb", *sql.released_statements(1), *TABLE])
        run(engine, ["insert into item values (1, 'old')"])
        run(
            engine,
            [
                "alter table audit.record_version set (timescaledb.compress)",
                "select compress_chunk(c) from show_chunks('audit.record_version') as c",
            ],
        )
        run(engine, sql.upgrade_statements(1, 2))
        with Session(engine) as session:
            with audit_context(session, actor="user:42", request_id="r-9"):
                session.execute(sa.text("update item set name = 'new'"))
            session.commit()
        expected = [
            ("INSERT", 1, None, None),
            ("UPDATE", 1, "user:42", {"request_id": "r-9"}),
        ]
        assert who(engine) == expected
        run(engine, sql.downgrade_statements(2, 1))
        assert who(engine) == expected
    finally:
        engine.dispose()


def _error(engine: sa.Engine, statements: Iterable[str]) -> tuple[str, str]:
    with pytest.raises(sa.exc.DBAPIError) as raised:
        run(engine, statements)
    assert isinstance(raised.value.orig, psycopg2.Error)
    diag = raised.value.orig.diag
    return diag.message_primary, diag.message_hint


def test_the_version_guards(engine: sa.Engine) -> None:
    assert _error(engine, sql.upgrade_statements(1, 2)) == (
        "audit schema upgrade to version 2: the installed audit schema is missing, not version 1",
        "Install the audit trail with op.install_audit(): it installs the latest version.",
    )
    assert _error(engine, sql.downgrade_statements(2, 1)) == (
        "audit schema downgrade to version 1: the installed audit schema is missing, not version 2",
        "There is no audit schema to downgrade in this database.",
    )
    run(engine, sql.install_statements())
    current = sql.SCHEMA_VERSION
    assert _error(engine, sql.upgrade_statements(current - 1, current)) == (
        f"audit schema upgrade to version {current}: the installed audit schema is version "
        f"{current}, not version {current - 1}",
        f"The audit schema is at version {current} already: there is nothing to upgrade.",
    )
    assert _error(engine, sql.upgrade_statements(1, 2)) == (
        f"audit schema upgrade to version 2: the installed audit schema is version {current},"
        " not version 1",
        "This database has a newer audit schema than this step expects: downgrade it first,"
        " or leave out this step.",
    )
    run(engine, sql.downgrade_statements(current, 1))
    assert _error(engine, sql.downgrade_statements(2, 1)) == (
        "audit schema downgrade to version 1: the installed audit schema is version 1, "
        "not version 2",
        "The audit schema is at version 1 already: there is nothing to downgrade.",
    )


def test_the_version_helpers() -> None:
    assert sql.SCHEMA_VERSION == 6
    found = sql.install_statements()  # the steps, the indexes, the functions (others around)

    def guard(direction: str, target: int, expected: int) -> str:
        return sql.filled(
            "version_guard", {"direction": direction, "target": target, "expected": expected}
        )

    steps = [
        *sql.statements("steps/1"), *sql.statements("steps/2"),
        *sql.statements("steps/3"), *sql.statements("steps/4"),
        *sql.statements("steps/5"), *sql.statements("steps/6"),
    ]  # fmt: skip
    start = found.index(steps[0])  # no guard needed
    assert found[start : start + len(steps)] == steps
    assert found[start + len(steps) :][: len(sql.statements("indexes"))] == list(
        sql.statements("indexes")
    )
    functions = sql.function_statements()
    assert sql.upgrade_statements(5, 6) == [
        guard("upgrade", 6, 5),
        *sql.statements("steps/6"),
        *functions,
    ]
    assert sql.upgrade_statements(4, 5) == [
        guard("upgrade", 5, 4),
        *sql.statements("steps/5"),
        *sql.released_statements(5),
    ]
    assert sql.upgrade_statements(3, 4) == [
        guard("upgrade", 4, 3),
        *sql.statements("steps/4"),
        *sql.released_statements(4),
    ]
    assert sql.upgrade_statements(2, 3) == [
        guard("upgrade", 3, 2),
        *sql.statements("steps/3"),
        *sql.released_statements(3),
    ]
    # An intermediate version ends with the functions it was released with.
    assert sql.upgrade_statements(1, 2) == [
        guard("upgrade", 2, 1),
        *sql.statements("steps/2"),
        *sql.released_statements(2),
    ]
    assert sql.upgrade_statements(1, 6) == [
        guard("upgrade", 2, 1), *sql.statements("steps/2"),
        guard("upgrade", 3, 2), *sql.statements("steps/3"),
        guard("upgrade", 4, 3), *sql.statements("steps/4"),
        guard("upgrade", 5, 4), *sql.statements("steps/5"),
        guard("upgrade", 6, 5), *sql.statements("steps/6"), *functions,
    ]  # fmt: skip
    assert sql.upgrade_statements(2, 2) == sql.downgrade_statements(1, 1) == []
    assert sql.downgrade_statements(5, 1) == [
        guard("downgrade", 4, 5), *sql.statements("steps/5.down"),
        *sql.statements("retention_to_policy"),
        guard("downgrade", 3, 4), *sql.statements("steps/4.down"),
        guard("downgrade", 2, 3), *sql.statements("steps/3.down"),
        guard("downgrade", 1, 2), *sql.statements("steps/2.down"),
        *sql.released_statements(1),
    ]  # fmt: skip
    for statements, version in (
        (sql.statements("steps/2"), 2),
        (sql.statements("steps/2.down"), 1),
        (sql.statements("steps/3"), 3),
        (sql.statements("steps/3.down"), 2),
        (sql.statements("steps/4"), 4),
        (sql.statements("steps/4.down"), 3),
        (sql.statements("steps/5"), 5),
        (sql.statements("steps/5.down"), 4),
        (sql.statements("steps/6"), 6),
        (sql.statements("steps/6.down"), 5),
    ):
        assert list(statements[-2:]) == [
            "delete from audit.schema_version",
            f"insert into audit.schema_version (version) values ({version})",
        ]
    with pytest.raises(ValueError) as raised:
        sql.upgrade_statements(2, 1)
    assert str(raised.value) == (
        "audit schema upgrade: cannot go from version 2 to 1; that is a downgrade"
    )
    with pytest.raises(ValueError) as raised:
        sql.downgrade_statements(1, 2)
    assert str(raised.value) == (
        "audit schema downgrade: cannot go from version 1 to 2; that is an upgrade"
    )
    with pytest.raises(ValueError) as raised:
        sql.upgrade_statements(1, 7)
    assert str(raised.value) == "audit schema upgrade: versions go from 1 to 6, not 7"
    with pytest.raises(ValueError) as raised:
        sql.downgrade_statements(True, 1)
    assert str(raised.value) == "audit schema downgrade: versions go from 1 to 6, not True"
