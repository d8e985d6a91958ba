"""Reading the audit trail from Python: record ids, history, table history, as_of, the CLI.

Changes are made through an ORM Session on a real server; every assertion is on the
exact audit rows the functions return.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import RecordVersion, as_of, history, record_id, sql, table_history
from hyper_audit_alembic.cli import main
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.runtime.history import Operation, key_text, parse_table_name
from hyper_audit_alembic.sqltext import qualified_name

T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc)


def install(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for statement in sql.install_statements():
            connection.exec_driver_sql(statement)


def track(engine: sa.Engine, *tables: sa.Table) -> dict[str, int]:
    """Track the tables; their oids by name."""
    oids = {}
    with engine.begin() as connection:
        for table in tables:
            name = qualified_name(table.name, table.schema)
            connection.execute(sa.text("select audit.enable_tracking(:t)"), {"t": name})
            oids[table.name] = connection.execute(
                sa.text("select cast(to_regclass(:t) as oid)"), {"t": name}
            ).scalar_one()
    return oids


def spread_timestamps(engine: sa.Engine, start: dt.datetime = T0) -> None:
    """Give the audit rows one minute apart from ``start``, in id order (exact output)."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "update audit.record_version set ts = :start + "
                "(id - (select min(id) from audit.record_version)) * interval '1 minute'"
            ),
            {"start": start},
        )


def summary(rows: list[RecordVersion]) -> list[tuple[Any, ...]]:
    return [(r.op, r.record_id, r.old_record_id, r.record, r.old_record) for r in rows]


@pytest.fixture
def audited(engine: sa.Engine) -> sa.Engine:
    install(engine)
    return engine


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Membership(Base):
    """A composite, non-integer key, declared in a different order than the columns."""

    __tablename__ = "Members"
    __table_args__ = (sa.PrimaryKeyConstraint("code", "tenant"), {"schema": "xyz"})
    tenant: Mapped[str]
    code: Mapped[uuid.UUID]
    role_name: Mapped[str] = mapped_column("role")


class Price(Base):
    """A numeric key: the record id takes the value with the column's scale (1.50)."""

    __tablename__ = "price"
    # autoincrement=False: SQLAlchemy 2.0 would make a lone Numeric key a SERIAL.
    amount: Mapped[Decimal] = mapped_column(
        sa.Numeric(10, 2), primary_key=True, autoincrement=False
    )
    label: Mapped[str]


@pytest.fixture
def tables(audited: sa.Engine) -> dict[str, int]:
    with audited.begin() as connection:
        connection.exec_driver_sql("create schema xyz")
    Base.metadata.create_all(audited)
    return track(audited, *Base.metadata.sorted_tables)


# --- record ids -------------------------------------------------------------------------


def test_record_id_test_vector() -> None:
    expected = uuid.UUID("57ca384e-f24c-5af5-b361-a057aeac506c")
    assert record_id(16439, 1) == expected
    assert record_id(16439, "1") == expected


def test_key_text_forms() -> None:
    assert key_text(True) == "true"
    assert key_text(Decimal("1E+2")) == "100"
    assert key_text(Decimal("-0.00")) == "0.00"
    assert key_text(dt.datetime(2024, 1, 2, 3, 4, 5, 120000)) == "2024-01-02T03:04:05.12"
    assert key_text(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert key_text(dt.time(3, 4, 5, 500000)) == "03:04:05.5"
    assert key_text(b"\x01\xff") == "\\x01ff"
    assert [key_text(f) for f in (149.99, 100.0, 1e-05, 1e16, -0.0, float("-inf"))] == [
        "149.99",
        "100",
        "0.00001",
        "10000000000000000",
        "0",
        "-Infinity",
    ]
    kathmandu = dt.timezone(dt.timedelta(hours=5, minutes=45))
    assert key_text(dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=kathmandu)) == (
        "2024-01-01T21:19:05.5+00:00"
    )
    with pytest.raises(TypeError) as refused_type:
        key_text(1j)
    assert str(refused_type.value) == (
        "record id: key values of type complex are not supported; pass the text PostgreSQL "
        "writes for the value (row_to_json(...) ->> column) as a str"
    )
    with pytest.raises(ValueError) as refused_none:
        key_text(None)
    assert str(refused_none.value) == "record id: a primary-key value cannot be None"


KEY_TYPES: dict[str, tuple[str, list[Any]]] = {
    "int": ("integer", [1, -7, 2147483647]),
    "bigint": ("bigint", [9007199254740993, -1]),
    "text": (
        "text",
        ["plain", 'quo"te', "back\\slash", "tab\tnew\nline\x01\x1f", "é ü ß 中文 😀", "\u2028"],
    ),
    "uuid": ("uuid", [uuid.UUID("0a0b0c0d-0000-4000-8000-00000000000f"), uuid.uuid4()]),
    "numeric": ("numeric(10, 2)", [Decimal("1.50"), Decimal("-3.00"), Decimal("0.00")]),
    "bool": ("boolean", [True, False]),
    "date": ("date", [dt.date(2024, 2, 29)]),
    "timestamp": (
        "timestamp",
        [dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 2, 3, 4, 5, 120300)],
    ),
    "timestamptz": (
        "timestamptz",
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=dt.timezone.utc),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        ],
    ),
    "float8": ("double precision", [149.99, 100.0, 1e-05, 1e16, 1e15, -0.5, 0.1 + 0.2]),
    "bytea": ("bytea", [b"\x00\x01\xfe"]),
}


def test_record_id_equals_the_database_for_each_key_type(audited: sa.Engine) -> None:
    with audited.begin() as connection:
        # A writer's output settings change no record id (audit schema version 3 on).
        connection.exec_driver_sql(
            "set timezone = 'Asia/Kathmandu'; set extra_float_digits = -3;"
            " set bytea_output = 'escape'; set datestyle = 'SQL, DMY'"
        )
        for name, (sql_type, values) in KEY_TYPES.items():
            connection.exec_driver_sql(f"create table k_{name} (k {sql_type} primary key)")
            connection.execute(sa.text(f"select audit.enable_tracking('k_{name}')"))
            for value in values:
                connection.execute(sa.text(f"insert into k_{name} values (:v)"), {"v": value})
        connection.exec_driver_sql(
            "create table k_composite (a int, b text, c uuid, d bigint, primary key (c, a, b))"
        )
        connection.execute(sa.text("select audit.enable_tracking('k_composite')"))
        composite = [(1, "x'y\"z", uuid.UUID(int=5), 10), (2, "ä", uuid.UUID(int=6), 11)]
        for a, b, c, d in composite:
            connection.execute(
                sa.text("insert into k_composite values (:a, :b, :c, :d)"),
                {"a": a, "b": b, "c": c, "d": d},
            )
        found = connection.execute(
            sa.text(
                "select table_name::text, table_oid, record_id from audit.record_version "
                "order by id"
            )
        ).all()
    expected = []
    position = 0
    for name, (_, values) in KEY_TYPES.items():
        for value in values:
            oid = found[position].table_oid
            expected.append((f"k_{name}", oid, record_id(oid, value)))
            position += 1
    for a, b, c, _ in composite:
        oid = found[position].table_oid
        expected.append(("k_composite", oid, record_id(oid, a, b, c)))  # column-number order
        position += 1
    assert [tuple(row) for row in found] == expected


# --- one record -------------------------------------------------------------------------


def test_history_of_the_account_scenario(audited: sa.Engine, tables: dict[str, int]) -> None:
    oid = tables["account"]
    rid = record_id(oid, 1)
    with Session(audited) as session:
        account = Account(id=1, name="Foo Barsworth")
        session.add(account)
        session.commit()
        account.name = "Foo Barsworthy"
        session.commit()
        session.add(Account(id=2, name="Other"))
        session.commit()
        session.delete(account)
        session.commit()
        session.execute(sa.text("truncate account"))
        session.commit()

        versions = history(session, account)  # a deleted object
        assert summary(versions) == [
            ("INSERT", rid, None, {"id": 1, "name": "Foo Barsworth"}, None),
            (
                "UPDATE",
                rid,
                rid,
                {"id": 1, "name": "Foo Barsworthy"},
                {"id": 1, "name": "Foo Barsworth"},
            ),
            ("DELETE", None, rid, None, {"id": 1, "name": "Foo Barsworthy"}),
        ]
        assert [v.op for v in versions] == [Operation.INSERT, Operation.UPDATE, Operation.DELETE]
        assert all(isinstance(v.op, Operation) for v in versions)
        assert [v.changes for v in versions] == [
            {"id": (None, 1), "name": (None, "Foo Barsworth")},
            {"name": ("Foo Barsworth", "Foo Barsworthy")},
            {"id": (1, None), "name": ("Foo Barsworthy", None)},
        ]
        assert versions[2].values == {"id": 1, "name": "Foo Barsworthy"}
        assert {(v.table_oid, v.table_schema, v.table_name) for v in versions} == {
            (oid, "public", "account")
        }
        ids = [v.id for v in versions]
        assert [v.id for v in history(session, Account, 1)] == ids
        assert [v.id for v in history(session, Account, (1,))] == ids
        assert [v.id for v in history(session, Account, {"id": 1})] == ids
        assert [v.id for v in history(session, Account.__table__, 1)] == ids
        assert [v.id for v in history(session, "public.account", "1")] == ids
        assert [v.id for v in history(session, "account", 1)] == ids
        assert history(session, Account, 3) == []

        whole = table_history(session, Account)
        assert [(v.op, v.record_id or v.old_record_id) for v in whole] == [
            ("INSERT", rid),
            ("UPDATE", rid),
            ("INSERT", record_id(oid, 2)),
            ("DELETE", rid),
            ("TRUNCATE", None),
        ]


def test_history_with_a_composite_non_integer_key(
    audited: sa.Engine, tables: dict[str, int]
) -> None:
    oid = tables["Members"]
    code = uuid.UUID("6f1c2d3e-4a5b-4c6d-8e7f-808182838485")
    # The table's columns are (tenant, code, role): the record id takes them in that order,
    # whatever the order of the primary key constraint (code, tenant).
    rid = record_id(oid, "acme", code)
    with Session(audited) as session:
        member = Membership(tenant="acme", code=code, role_name="admin")
        session.add_all([member, Membership(tenant="other", code=code, role_name="x")])
        session.commit()
        member.role_name = "owner"
        session.commit()

        versions = history(session, member)
        assert summary(versions) == [
            ("INSERT", rid, None, {"tenant": "acme", "code": str(code), "role": "admin"}, None),
            (
                "UPDATE",
                rid,
                rid,
                {"tenant": "acme", "code": str(code), "role": "owner"},
                {"tenant": "acme", "code": str(code), "role": "admin"},
            ),
        ]
        ids = [v.id for v in versions]
        assert [v.id for v in history(session, Membership, (code, "acme"))] == ids
        assert [v.id for v in history(session, Membership, {"tenant": "acme", "code": code})] == ids
        assert [v.id for v in history(session, 'xyz."Members"', ("acme", str(code)))] == ids
        assert [
            v.id for v in history(session, 'xyz."Members"', {"code": code, "tenant": "acme"})
        ] == ids
        with pytest.raises(ValueError) as too_few:
            history(session, Membership, code)
        assert str(too_few.value) == (
            "history: the key of xyz.Members has 2 column(s) (code, tenant), got 1 value(s)"
        )
        with pytest.raises(ValueError) as other_columns:
            history(session, Membership, {"code": code})
        assert str(other_columns.value) == (
            "history: the key of xyz.Members is (code, tenant), got (code)"
        )


def test_history_of_a_numeric_key_and_of_a_dropped_table(
    audited: sa.Engine, tables: dict[str, int]
) -> None:
    oid = tables["price"]
    with Session(audited) as session:
        price = Price(amount=Decimal("1.5"), label="a")
        session.add_all([price, Price(amount=2, label="b")])
        session.commit()
        price.label = "c"
        session.commit()
        rid = record_id(oid, Decimal("1.50"))
        expected = [
            ("INSERT", rid, None, {"amount": 1.50, "label": "a"}, None),
            ("UPDATE", rid, rid, {"amount": 1.50, "label": "c"}, {"amount": 1.50, "label": "a"}),
        ]
        assert summary(history(session, price)) == expected
        assert summary(history(session, Price, Decimal("1.5"))) == expected
        assert [v.record for v in history(session, Price, 2)] == [{"amount": 2, "label": "b"}]

        session.execute(sa.text("drop table price"))
        session.commit()
        assert summary(history(session, Price, Decimal("1.5"))) == expected
        assert [v.op for v in table_history(session, Price)] == ["INSERT", "INSERT", "UPDATE"]


def test_history_follows_primary_key_changes(audited: sa.Engine, tables: dict[str, int]) -> None:
    oid = tables["account"]
    r1, r2, r3 = (record_id(oid, k) for k in (1, 2, 3))
    with Session(audited) as session:
        session.add(Account(id=1, name="a"))
        session.commit()
        session.execute(sa.text("update account set id = 2, name = 'b' where id = 1"))
        session.commit()
        session.execute(sa.text("update account set name = 'c' where id = 2"))
        session.commit()
        session.execute(sa.text("update account set id = 3 where id = 2"))
        session.commit()
        session.add(Account(id=1, name="new one"))  # key 1 used again, by another record
        session.commit()
        session.execute(sa.text("update account set name = 'd' where id = 3"))
        session.commit()

        moved = [
            ("INSERT", r1, None),
            ("UPDATE", r2, r1),
            ("UPDATE", r2, r2),
            ("UPDATE", r3, r2),
        ]
        ops = [(v.op, v.record_id, v.old_record_id) for v in history(session, Account, 3)]
        assert ops == [*moved, ("UPDATE", r3, r3)]
        ops = [(v.op, v.record_id, v.old_record_id) for v in history(session, Account, 2)]
        assert ops == [*moved, ("UPDATE", r3, r3)]
        # Key 1: everything recorded under it, and where the first record went from there.
        ops = [(v.op, v.record_id, v.old_record_id) for v in history(session, Account, 1)]
        assert ops == [*moved, ("INSERT", r1, None), ("UPDATE", r3, r3)]


def test_as_of(audited: sa.Engine, tables: dict[str, int]) -> None:
    with Session(audited) as session:
        session.add(Account(id=1, name="a"))
        session.commit()
        session.execute(sa.text("update account set name = 'b' where id = 1"))
        session.commit()
        session.execute(sa.text("update account set id = 5 where id = 1"))
        session.commit()
        session.execute(sa.text("delete from account where id = 5"))
        session.commit()
        session.add(Account(id=5, name="again"))
        session.commit()
        session.execute(sa.text("truncate account"))
        session.commit()
    spread_timestamps(audited)  # minutes 0..5
    minute = dt.timedelta(minutes=1)
    second = dt.timedelta(seconds=1)
    with Session(audited) as session:
        assert as_of(session, Account, 5, T0 - second) is None
        assert as_of(session, Account, 5, T0) == {"id": 1, "name": "a"}
        assert as_of(session, Account, 5, T0 + minute + second) == {"id": 1, "name": "b"}
        assert as_of(session, Account, 5, T0 + 2 * minute) == {"id": 5, "name": "b"}
        assert as_of(session, Account, 5, T0 + 3 * minute) is None
        assert as_of(session, Account, 5, T0 + 4 * minute) == {"id": 5, "name": "again"}
        assert as_of(session, Account, 5, T0 + 5 * minute) is None
        assert as_of(session, Account, 1, T0 + minute) == {"id": 1, "name": "b"}
        with pytest.raises(ValueError) as naive:
            as_of(session, Account, 5, dt.datetime(2024, 5, 1))
        assert str(naive.value) == (
            "as_of: pass a timezone-aware datetime (audit times are timestamptz)"
        )

        tail = table_history(session, Account, since=T0 + 2 * minute, until=T0 + 5 * minute)
        assert [(v.op, v.ts) for v in tail] == [
            ("UPDATE", T0 + 2 * minute),
            ("DELETE", T0 + 3 * minute),
            ("INSERT", T0 + 4 * minute),
        ]


def test_history_from_an_async_session(audited: sa.Engine, tables: dict[str, int]) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    with Session(audited) as session:
        session.add(Account(id=1, name="Foo"))
        session.commit()

    async def read() -> list[RecordVersion]:
        engine = create_async_engine(audited.url.set(drivername="postgresql+asyncpg"))
        try:
            async with AsyncSession(engine) as session:
                return await session.run_sync(history, Account, 1)
        finally:
            await engine.dispose()

    versions = asyncio.run(read())
    assert summary(versions) == [
        ("INSERT", record_id(tables["account"], 1), None, {"id": 1, "name": "Foo"}, None)
    ]


# --- backup and restore -----------------------------------------------------------------


@pytest.fixture
def restored_name(pg_server: ThrowawayPostgres, db_url: str) -> Iterator[str]:
    name = sa.make_url(db_url).database + "_restored"
    yield name
    done = pg_server.psql("postgres", "-c", f"drop database if exists {qualified_name(name)}")
    assert done.returncode == 0, done.stderr


def test_history_survives_pg_dump_and_restore(
    pg_server: ThrowawayPostgres, audited: sa.Engine, tables: dict[str, int], restored_name: str
) -> None:
    old_oid = tables["account"]
    with Session(audited) as session:
        session.add_all([Account(id=1, name="before dump"), Account(id=2, name="two")])
        session.commit()
        session.execute(sa.text("update account set name = 'dumped' where id = 1"))
        session.commit()
    audited.dispose()

    assert pg_server.bin_dir is not None
    source = sa.make_url(str(audited.url))
    connect = ["-h", pg_server.host, "-p", str(pg_server.port), "-U", pg_server.user]
    dump = subprocess.run(
        [str(pg_server.bin_dir / "pg_dump"), *connect, "-Fc", "-d", source.database],
        capture_output=True,
        check=True,
    ).stdout
    done = pg_server.psql("postgres", "-c", f"create database {qualified_name(restored_name)}")
    assert done.returncode == 0, done.stderr
    subprocess.run(
        [str(pg_server.bin_dir / "pg_restore"), *connect, "--exit-on-error", "-d", restored_name],
        input=dump,
        capture_output=True,
        check=True,
    )

    restored = sa.create_engine(pg_server.url(restored_name))
    try:
        with Session(restored) as session:
            new_oid = session.execute(sa.text("select 'account'::regclass::oid")).scalar_one()
            assert new_oid != old_oid
            account = session.get(Account, 1)
            assert account is not None
            account.name = "after restore"  # tracking is still on
            session.commit()
            session.delete(account)
            session.commit()

            r_old, r_new = record_id(old_oid, 1), record_id(new_oid, 1)
            assert summary(history(session, Account, 1)) == [
                ("INSERT", r_old, None, {"id": 1, "name": "before dump"}, None),
                (
                    "UPDATE",
                    r_old,
                    r_old,
                    {"id": 1, "name": "dumped"},
                    {"id": 1, "name": "before dump"},
                ),
                (
                    "UPDATE",
                    r_new,
                    r_new,
                    {"id": 1, "name": "after restore"},
                    {"id": 1, "name": "dumped"},
                ),
                ("DELETE", None, r_new, None, {"id": 1, "name": "after restore"}),
            ]
            assert [(v.op, v.table_oid) for v in table_history(session, "account")] == [
                ("INSERT", old_oid),
                ("INSERT", old_oid),
                ("UPDATE", old_oid),
                ("UPDATE", new_oid),
                ("DELETE", new_oid),
            ]
            assert as_of(session, Account, 2, dt.datetime.now(dt.timezone.utc)) == {
                "id": 2,
                "name": "two",
            }
    finally:
        restored.dispose()


def test_an_old_oid_now_used_by_another_table_is_read_by_name(
    audited: sa.Engine, tables: dict[str, int]
) -> None:
    """After a restore into another cluster the table's old oid may belong to another
    relation: its rows count only where they were recorded under the table's name."""
    other = tables["Members"]
    with Session(audited) as session:
        session.add(Account(id=1, name="now"))
        session.add(Membership(tenant="1", code=uuid.UUID(int=1), role_name="r"))
        session.commit()
        # The Members table's oid, recorded under the name account: a restored history.
        old_rid = record_id(other, 1)
        session.execute(
            sa.text(
                "insert into audit.record_version (record_id, op, ts, table_oid, table_schema,"
                " table_name, record) values (:rid, 'INSERT', :ts, :oid, 'public', 'account',"
                " cast(:record as jsonb))"
            ),
            {"rid": old_rid, "ts": T0, "oid": other, "record": '{"id": 1, "name": "old"}'},
        )
        session.commit()
        versions = history(session, Account, 1)
        assert [(v.op, v.table_oid, v.record) for v in versions] == [
            ("INSERT", other, {"id": 1, "name": "old"}),
            ("INSERT", tables["account"], {"id": 1, "name": "now"}),
        ]
        assert [(v.table_name, v.op) for v in table_history(session, Account)] == [
            ("account", "INSERT"),
            ("account", "INSERT"),
        ]
        assert [(v.table_name, v.op) for v in table_history(session, Membership)] == [
            ("Members", "INSERT")
        ]


# --- the API's shape ----------------------------------------------------------------------


def test_record_version_stays_out_of_the_users_metadata() -> None:
    assert RecordVersion.__table__.metadata is not Base.metadata
    assert "audit.record_version" not in Base.metadata.tables
    assert list(RecordVersion.metadata.tables) == ["audit.record_version"]


def test_the_history_api_imports_without_alembic() -> None:
    code = (
        "import sys, hyper_audit_alembic as h\n"
        "assert h.history and h.table_history and h.as_of and h.record_id and h.RecordVersion\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_parse_table_name() -> None:
    assert parse_table_name("Account") == (None, "account")
    assert parse_table_name('xyz."Members"') == ("xyz", "Members")
    assert parse_table_name('"a.b"."c""d"') == ("a.b", 'c"d')
    assert parse_table_name("Ünï.t") == ("Ünï", "t")
    with pytest.raises(ValueError) as refused:
        parse_table_name("a.b.c.d")
    assert str(refused.value) == "not a table name (schema.table at most): 'a.b.c.d'"


# --- the command ----------------------------------------------------------------------------


def test_cli_history(
    audited: sa.Engine,
    tables: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = uuid.UUID(int=7)
    with Session(audited) as session:
        member = Membership(tenant="acme", code=code, role_name="admin")
        session.add(member)
        session.commit()
        member.role_name = "owner ✓"
        session.commit()
        session.delete(member)
        session.commit()
    spread_timestamps(audited)
    monkeypatch.setenv("PGTZ", "UTC")
    url = audited.url.render_as_string(hide_password=False)

    assert main(["history", "--url", url, 'xyz."Members"', "acme", str(code)]) == 0
    assert capsys.readouterr().out == (
        'xyz."Members" (tenant, code) = (acme, 00000000-0000-0000-0000-000000000007):'
        " 3 changes\n"
        "ts                         op      actor     context  changes\n"
        "2024-05-01 10:00:00+00:00  INSERT  postgres           "
        f'tenant="acme", code="{code}", role="admin"\n'
        '2024-05-01 10:01:00+00:00  UPDATE  postgres           role: "admin" -> "owner ✓"\n'
        "2024-05-01 10:02:00+00:00  DELETE  postgres           "
        f'tenant="acme", code="{code}", role="owner ✓"\n'
    )

    assert main(["history", "--url", url, "--json", 'xyz."Members"', "acme", str(code)]) == 0
    rows = json.loads(capsys.readouterr().out)
    rid = str(record_id(tables["Members"], "acme", code))
    record = {"tenant": "acme", "code": str(code), "role": "admin"}
    assert len({row["transaction_id"] for row in rows}) == 3
    assert [
        {k: v for k, v in row.items() if k not in ("id", "transaction_id")} for row in rows
    ] == [
        {
            "ts": "2024-05-01T10:00:00+00:00",
            "op": "INSERT",
            "record_id": rid,
            "old_record_id": None,
            "table_oid": tables["Members"],
            "table_schema": "xyz",
            "table_name": "Members",
            "record": record,
            "old_record": None,
            "actor": "postgres",
            "context": None,
        },
        {
            "ts": "2024-05-01T10:01:00+00:00",
            "op": "UPDATE",
            "record_id": rid,
            "old_record_id": rid,
            "table_oid": tables["Members"],
            "table_schema": "xyz",
            "table_name": "Members",
            "record": {**record, "role": "owner ✓"},
            "old_record": record,
            "actor": "postgres",
            "context": None,
        },
        {
            "ts": "2024-05-01T10:02:00+00:00",
            "op": "DELETE",
            "record_id": None,
            "old_record_id": rid,
            "table_oid": tables["Members"],
            "table_schema": "xyz",
            "table_name": "Members",
            "record": None,
            "old_record": {**record, "role": "owner ✓"},
            "actor": "postgres",
            "context": None,
        },
    ]

    assert main(["history", "--url", url, "account", "42"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no audit rows for account (id) = (42)\n")

    assert main(["history", "--url", url, "account", "x"]) == 1
    assert capsys.readouterr().err == ('error: invalid input syntax for type integer: "x"\n')

    with Session(audited) as session:
        session.add(Price(amount=Decimal("1.5"), label="a"))
        session.commit()
    assert main(["history", "--url", url, "--json", "price", "1.5"]) == 0  # read as numeric(10,2)
    [row] = json.loads(capsys.readouterr().out)
    assert row["record_id"] == str(record_id(tables["price"], Decimal("1.50")))

    assert main(["history", "--url", url, "account", "1", "2"]) == 1
    assert capsys.readouterr().err == (
        "error: history: the key of public.account has 1 column(s) (id), got 2 value(s)\n"
    )


def test_cli_module_runs(audited: sa.Engine, tables: dict[str, int]) -> None:
    with Session(audited) as session:
        session.add(Account(id=1, name="Foo"))
        session.commit()
    url = audited.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", "history", "--url", url, "account", "1"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "account (id) = (1): 1 change"
    assert done.stdout.splitlines()[2].endswith('  INSERT  postgres           id=1, name="Foo"')
