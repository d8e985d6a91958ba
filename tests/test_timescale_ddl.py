"""The TimescaleDB branch of indexes.sql, checked on any PostgreSQL (no TimescaleDB needed).

``test_timescale.py`` runs the branch for real where TimescaleDB is installed; CI has no
TimescaleDB, so these tests run its SQL here: every statement of the branch except the
``create_hypertable`` call runs on a plain install, and the call's dynamic SQL text is
evaluated by the server. The plain layout (primary key, BRIN) is checked too, because
the branch has to undo exactly that layout when it converts an existing install.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import Db, connect, offline_sql, record_id, run_online
from timescale_helpers import HYPERTABLE_INDEXES, TRANSACTION_ID_INDEX

from hyper_audit_alembic import sql

#: The indexes of audit.record_version without TimescaleDB.
PLAIN_INDEXES = [
    "CREATE INDEX record_version_old_record_id ON audit.record_version USING btree"
    " (old_record_id) WHERE (old_record_id IS NOT NULL)",
    "CREATE INDEX record_version_record_id ON audit.record_version USING btree"
    " (record_id) WHERE (record_id IS NOT NULL)",
    "CREATE INDEX record_version_table_oid ON audit.record_version USING btree (table_oid, ts)",
    TRANSACTION_ID_INDEX,
    "CREATE INDEX record_version_ts ON audit.record_version USING brin (ts)",
    "CREATE UNIQUE INDEX record_version_pkey ON audit.record_version USING btree (id)",
]

#: What the branch runs, with the extension in schema public.
CREATE_HYPERTABLE = (
    "select public.create_hypertable('audit.record_version', 'ts',"
    " create_default_indexes => false, migrate_data => true)"
)

SHAPE_CHANGED = (
    "the TimescaleDB block of indexes.sql no longer has the shape this test reads "
    "(if timescale_schema is not null then <conversion> <indexes> else <plain> end if): "
    "update the test with it"
)


def timescale_block() -> str:
    """The install statement (indexes.sql) that converts audit.record_version to a hypertable."""
    (block,) = sql.statements("indexes")
    return block


def timescale_branch() -> str:
    """The part of the block that runs when the timescaledb extension is installed."""
    after_if = timescale_block().split("if timescale_schema is not null then", 1)
    assert len(after_if) == 2, SHAPE_CHANGED
    branches = after_if[1].split("\n    else\n")
    assert len(branches) == 2, SHAPE_CHANGED
    return branches[0]


def branch_ddl() -> list[str]:
    """The branch's DDL statements in order: everything but the create_hypertable call."""
    found = re.findall(
        r"^\s*((?:alter table|drop index|create index)\b.*?);", timescale_branch(), re.M | re.S
    )
    assert found, SHAPE_CHANGED
    return [" ".join(statement.split()) for statement in found]


def create_hypertable_expression() -> str:
    """The PL/pgSQL expression whose value the branch executes."""
    found = re.findall(r"execute\s+(.*?create_hypertable.*?);", timescale_branch(), re.S)
    assert len(found) == 1, SHAPE_CHANGED
    return str(found[0])


def install(operations: Operations) -> None:
    operations.install_audit()  # type: ignore[attr-defined]


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


def indexes(db: Db) -> list[str]:
    return [
        row[0]
        for row in db.rows(
            "select pg_get_indexdef(indexrelid) from pg_index"
            " where indrelid = 'audit.record_version'::regclass order by 1"
        )
    ]


def keys(db: Db) -> list[tuple[str, str]]:
    return db.rows(
        "select conname::text, pg_get_constraintdef(oid) from pg_constraint"
        " where conrelid = 'audit.record_version'::regclass and contype in ('p', 'u')"
    )


def test_plain_install_has_a_primary_key_on_id_and_brin_on_ts(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install)

    assert db.one("select count(*) from pg_extension where extname = 'timescaledb'") == 0
    assert indexes(db) == PLAIN_INDEXES
    assert keys(db) == [("record_version_pkey", "PRIMARY KEY (id)")]


def test_conversion_drops_every_key_and_index_of_the_plain_layout(
    db: Db, engine: sa.Engine
) -> None:
    """A key or index the conversion keeps would block create_hypertable or stay plain."""
    run_online(engine, install)
    ddl = branch_ddl()
    dropped_keys = {
        m.group(1) for s in ddl if (m := re.fullmatch(r".* drop constraint if exists (\w+)", s))
    }
    dropped_indexes = {
        m.group(1) for s in ddl if (m := re.fullmatch(r"drop index if exists audit\.(\w+)", s))
    }

    assert dropped_keys == {name for name, _ in keys(db)}
    # A dropped primary key takes its index along.
    assert dropped_indexes | dropped_keys == {
        name
        for (name,) in db.rows(
            "select c.relname::text from pg_index i join pg_class c on c.oid = i.indexrelid"
            " where i.indrelid = 'audit.record_version'::regclass"
        )
    } - {"record_version_transaction_id"}  # version 2's: kept, see TRANSACTION_ID_INDEX


def test_conversion_ddl_gives_the_hypertable_layout_and_keeps_history(
    db: Db, engine: sa.Engine
) -> None:
    """Every statement of the branch but create_hypertable, run over a plain install."""
    db.run("create table public.account (id int primary key, name text not null)")
    run_online(engine, install)
    db.run("select audit.enable_tracking('public.account')")
    db.run("insert into public.account values (1, 'Foo Barsworth')")
    db.run("update public.account set name = 'Foo Bar' where id = 1")
    history = db.audit_rows()

    for statement in branch_ddl():
        db.run(statement)

    assert indexes(db) == HYPERTABLE_INDEXES
    assert keys(db) == []
    assert db.audit_rows() == history
    db.run("delete from public.account where id = 1")
    oid = db.oid("public.account")
    assert db.audit_rows()[2] == (
        "DELETE",
        None,
        record_id(oid, "1"),
        oid,
        "public",
        "account",
        None,
        {"id": 1, "name": "Foo Bar"},
    )
    # Run again (install over an existing hypertable): the same layout.
    for statement in branch_ddl():
        if statement.startswith("create index"):
            db.run(statement)
    assert indexes(db) == HYPERTABLE_INDEXES


@pytest.mark.parametrize(
    ("extension_schema", "called_as"),
    [("public", "public"), ("Time Series", '"Time Series"')],
)
def test_create_hypertable_call_text(db: Db, extension_schema: str, called_as: str) -> None:
    """The dynamic SQL the branch executes, as the server builds it from the expression."""
    expression = create_hypertable_expression().replace("timescale_schema", "%s::name")

    built = db.one(f"select {expression}", [extension_schema])

    assert built == CREATE_HYPERTABLE.replace("public.", called_as + ".", 1)


def test_offline_output_carries_the_timescale_block_verbatim() -> None:
    assert timescale_block() + ";" in offline_sql(install)
