"""Issue 14 item 4: what each version changed (``diff``) and who changed one column
(``column_history``), through renames, typed; the ``diff`` command line.

Changes are made through an ORM Session with ``audit_context`` on a real server; every
assertion is on the exact values the functions return.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import (
    audit_context,
    column_history,
    diff,
    history,
    net_changes,
    sql,
)
from hyper_audit_alembic.runtime.history import Operation

INS, U, D = Operation.INSERT, Operation.UPDATE, Operation.DELETE
DAY = dt.date(2024, 5, 1)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str]
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    due: Mapped[dt.date | None]


@pytest.fixture
def tracked(engine: sa.Engine) -> Iterator[sa.Engine]:
    """The current audit schema, with item created and tracked."""
    with engine.begin() as connection:
        for statement in sql.install_statements():
            connection.exec_driver_sql(statement)
        Base.metadata.create_all(connection)
        connection.execute(sa.text("select audit.enable_tracking('public.item')"))
    yield engine


def write(engine: sa.Engine, actor: str, request: str, change: Any) -> None:
    with Session(engine) as session, session.begin():
        with audit_context(session, actor=actor, request_id=request):
            change(session)


def scenario(engine: sa.Engine) -> list[int]:
    """Insert, two updates, the column renamed (name -> title), an update, a delete.
    Returns the audit row ids, in order."""
    write(
        engine,
        "alice",
        "r1",
        lambda s: s.add(Item(id=1, name="pen", price=Decimal("1.50"), due=DAY)),
    )
    write(
        engine,
        "alice",
        "r1",
        lambda s: s.add(Item(id=2, name="ink", price=Decimal("9.00"), due=None)),
    )

    def reprice(session: Session) -> None:
        session.get(Item, 1).price = Decimal("2.25")  # type: ignore[union-attr]

    write(engine, "bob", "r2", reprice)

    def rename_only(session: Session) -> None:
        session.get(Item, 1).name = "Pen"  # type: ignore[union-attr]

    write(engine, "bob", "r3", rename_only)
    with engine.begin() as connection:
        connection.exec_driver_sql("alter table item rename column name to title")
    with engine.begin() as connection:
        connection.exec_driver_sql("update item set title = 'Pen 2', price = 3 where id = 1")
        connection.exec_driver_sql("delete from item where id = 1")
    with engine.connect() as connection:
        return list(connection.scalars(sa.text("select id from audit.record_version order by id")))


def test_diff_of_a_record_through_a_rename_typed(tracked: sa.Engine) -> None:
    ids = scenario(tracked)
    with Session(tracked) as session:
        diffs = diff(session, "public.item", 1)
        got = [(d.id, d.op, d.changes, d.dropped, d.version.actor) for d in diffs]
    assert got == [
        (ids[0], INS, {
            "id": (None, 1), "title": (None, "pen"), "price": (None, Decimal("1.50")),
            "due": (None, DAY),
        }, {}, "alice"),
        (ids[2], U, {"price": (Decimal("1.50"), Decimal("2.25"))}, {}, "bob"),
        # Written as "name", shown under today's name.
        (ids[3], U, {"title": ("pen", "Pen")}, {}, "bob"),
        (ids[4], U, {"title": ("Pen", "Pen 2"), "price": (Decimal("2.25"), Decimal("3.00"))},
         {}, "postgres"),
        (ids[5], D, {
            "id": (1, None), "title": ("Pen 2", None), "price": (Decimal("3.00"), None),
            "due": (DAY, None),
        }, {}, "postgres"),
    ]  # fmt: skip
    assert net_changes(diffs[1:4]) == {
        "title": ("pen", "Pen 2"),
        "price": (Decimal("1.50"), Decimal("3.00")),
    }
    with Session(tracked) as session:
        ranged = diff(session, "public.item", 1, from_version=ids[2], to_version=ids[3])
        assert [d.id for d in ranged] == [ids[2], ids[3]]
        # typed=False: values as stored (JSON), still under today's names.
        raw = diff(session, "public.item", 1, typed=False)
        assert raw[1].changes == {"price": (1.50, 2.25)}
        assert raw[0].changes["due"] == (None, "2024-05-01")


def test_diff_reports_dropped_columns_and_takes_a_mapped_object(tracked: sa.Engine) -> None:
    write(
        tracked, "alice", "r1", lambda s: s.add(Item(id=7, name="cup", price=Decimal("4"), due=DAY))
    )

    def cheaper(session: Session) -> None:
        session.get(Item, 7).price = Decimal("3.5")  # type: ignore[union-attr]
        session.get(Item, 7).due = None  # type: ignore[union-attr]

    write(tracked, "bob", "r2", cheaper)
    with Session(tracked) as session:
        obj = session.get(Item, 7)
        by_object = [(d.op, d.changes) for d in diff(session, obj)]
    assert by_object == [
        (INS, {"id": (None, 7), "name": (None, "cup"), "price": (None, Decimal("4.00")),
             "due": (None, DAY)}),
        (U, {"price": (Decimal("4.00"), Decimal("3.50")), "due": (DAY, None)}),
    ]  # fmt: skip
    with tracked.begin() as connection:
        connection.exec_driver_sql("alter table item drop column due")
    with Session(tracked) as session:
        got = [(d.op, d.changes, d.dropped) for d in diff(session, "item", 7)]
    assert got == [
        (INS, {"id": (None, 7), "name": (None, "cup"), "price": (None, Decimal("4.00"))},
         {"due": (None, "2024-05-01")}),
        (U, {"price": (Decimal("4.00"), Decimal("3.50"))}, {"due": ("2024-05-01", None)}),
    ]  # fmt: skip


def test_column_history_across_the_table_with_actor_context_and_renames(
    tracked: sa.Engine,
) -> None:
    ids = scenario(tracked)
    with Session(tracked) as session:
        price = column_history(session, "public.item", "price")
        title = column_history(session, "public.item", "title")
        rows = {r.id: r for r in history(session, "public.item", 1)}
    assert [(c.version_id, c.op, c.key, c.old, c.new, c.actor, c.context) for c in price] == [
        (ids[0], INS, {"id": 1}, None, Decimal("1.50"), "alice", {"request_id": "r1"}),
        (ids[1], INS, {"id": 2}, None, Decimal("9.00"), "alice", {"request_id": "r1"}),
        (ids[2], U, {"id": 1}, Decimal("1.50"), Decimal("2.25"), "bob", {"request_id": "r2"}),
        (ids[4], U, {"id": 1}, Decimal("2.25"), Decimal("3.00"), "postgres", None),
        (ids[5], D, {"id": 1}, Decimal("3.00"), None, "postgres", None),
    ]
    # Versions written under the old name "name" count: today's name is "title".
    assert [(c.version_id, c.op, c.old, c.new) for c in title] == [
        (ids[0], INS, None, "pen"),
        (ids[1], INS, None, "ink"),
        (ids[3], U, "pen", "Pen"),
        (ids[4], U, "Pen", "Pen 2"),
        (ids[5], D, "Pen 2", None),
    ]
    assert {c.column for c in title} == {"title"}
    assert price[2].ts == rows[ids[2]].ts
    assert price[2].transaction_id == rows[ids[2]].transaction_id
    assert price[2].record_id == rows[ids[2]].record_id


def test_column_history_time_range_model_attribute_and_bad_column(tracked: sa.Engine) -> None:
    scenario_times = []
    for n, price in enumerate(("1", "2", "3")):
        if n == 0:
            write(tracked, "a", "r", lambda s: s.add(Item(id=1, name="x", price=Decimal(1))))
        else:

            def set_price(session: Session, price: str = price) -> None:
                session.get(Item, 1).price = Decimal(price)  # type: ignore[union-attr]

            write(tracked, "a", "r", set_price)
        with tracked.connect() as connection:
            scenario_times.append(
                connection.scalar(sa.text("select max(ts) from audit.record_version"))
            )
    with Session(tracked) as session:
        middle = column_history(session, Item, "price", scenario_times[1], scenario_times[2])
        assert [(c.op, c.old, c.new) for c in middle] == [(U, Decimal("1.00"), Decimal("2.00"))]
        since = column_history(session, Item.__table__, "price", since=scenario_times[1])
        assert [(c.old, c.new) for c in since] == [
            (Decimal("1.00"), Decimal("2.00")),
            (Decimal("2.00"), Decimal("3.00")),
        ]
        with pytest.raises(ValueError) as error:
            column_history(session, Item, "cost")
        assert str(error.value) == (
            "column_history: public.item has no column 'cost'; its columns are id, name, price, due"
        )
        with pytest.raises(TypeError) as type_error:
            column_history(session, Item, "price", since="yesterday")  # type: ignore[arg-type]
        assert str(type_error.value) == (
            "column_history: since must be a datetime, got str 'yesterday'"
        )


def test_column_history_uses_the_table_oid_index(tracked: sa.Engine) -> None:
    with tracked.begin() as connection:
        connection.exec_driver_sql("create table other (id int primary key, v text)")
        connection.exec_driver_sql("select audit.enable_tracking('public.other')")
        connection.exec_driver_sql(
            "insert into other select g, 'x' from generate_series(1, 30000) g"
        )
        connection.exec_driver_sql(
            "insert into item select g, 'n', g, null from generate_series(1, 200) g"
        )
        connection.exec_driver_sql("update item set price = price + 1 where id <= 10")
        connection.exec_driver_sql("analyze audit.record_version")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "is distinct from" in statement.lower():
            statements.append((statement, parameters))

    sa.event.listen(tracked, "before_cursor_execute", capture)
    try:
        with Session(tracked) as session:
            changes = column_history(session, Item, "price")
            since = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
            ranged = column_history(session, Item, "price", since, dt.datetime.now(dt.timezone.utc))
    finally:
        sa.event.remove(tracked, "before_cursor_execute", capture)
    assert len(changes) == 210
    assert [(c.op, c.old, c.new) for c in changes if c.op == U][:1] == [
        (U, Decimal("1.00"), Decimal("2.00"))
    ]
    assert len(ranged) == 210
    assert len(statements) == 2
    for statement, parameters in statements:
        with tracked.connect() as connection:
            plan = "\n".join(
                connection.exec_driver_sql("explain " + statement, parameters).scalars()
            )
        assert "using record_version_table_oid on record_version" in plan, plan
        assert "Seq Scan on record_version" not in plan, plan


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        timeout=120,
    )


def test_cli_diff(tracked: sa.Engine, db_url: str) -> None:
    ids = scenario(tracked)
    done = cli("diff", "--url", db_url, "item", "1", "--from", str(ids[2]), "--to", str(ids[3]))
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    with tracked.connect() as connection:
        ts2, ts3 = connection.scalars(
            sa.text("select ts from audit.record_version where id in (:a, :b) order by id"),
            {"a": ids[2], "b": ids[3]},
        )
    assert lines == [
        "item (id) = (1): 2 versions",
        f'version {ids[2]} UPDATE {ts2} by bob {{"request_id": "r2"}}',
        "  price: 1.50 -> 2.25",
        f'version {ids[3]} UPDATE {ts3} by bob {{"request_id": "r3"}}',
        '  title: "pen" -> "Pen"',
    ]
    net = cli("diff", "--url", db_url, "item", "1", "--net", "--from", str(ids[2]),
              "--to", str(ids[4]))  # fmt: skip
    assert (net.returncode, net.stderr) == (0, "")
    assert net.stdout.splitlines() == [
        f"item (id) = (1): from before version {ids[2]} to after version {ids[4]}",
        "  price: 1.50 -> 3.00",
        '  title: "pen" -> "Pen 2"',
    ]
    as_json = cli("diff", "--url", db_url, "--json", "item", "1", "--to", str(ids[2]))
    assert json.loads(as_json.stdout) == [
        {
            "id": ids[0], "op": "INSERT", "ts": json.loads(as_json.stdout)[0]["ts"],
            "actor": "alice", "context": {"request_id": "r1"},
            "changes": {"id": [None, 1], "title": [None, "pen"], "price": [None, "1.50"],
                        "due": [None, "2024-05-01"]},
            "dropped": {},
        },
        {
            "id": ids[2], "op": "UPDATE", "ts": json.loads(as_json.stdout)[1]["ts"],
            "actor": "bob", "context": {"request_id": "r2"},
            "changes": {"price": ["1.50", "2.25"]},
            "dropped": {},
        },
    ]  # fmt: skip
    missing = cli("diff", "--url", db_url, "nosuch", "1")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1, "", "error: no such table: nosuch\n"
    )  # fmt: skip
    none = cli("diff", "--url", db_url, "item", "99")
    assert (none.returncode, none.stdout, none.stderr) == (
        1, "", "no audit rows for item (id) = (99)\n"
    )  # fmt: skip
