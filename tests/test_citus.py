"""Citus: the audit trail on a cluster of a coordinator and two workers (issue 16, part 4).

``op.distribute_audit()`` makes ``audit.record_version`` a distributed table (by
``table_oid``) and tracks tables row by row with ``audit.citus_row_change``, whose trigger
arguments carry the coordinator's table oid, schema and name. The cluster tests start three
servers preloading citus and skip, with the reason, where Citus is not installed (as in
CI). The tests of the Citus write path's row logic on a plain server run everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from alembic_project import Project, autogenerate
from citus_helpers import CitusCluster, citus_cluster, fresh_citus_database, run_sql
from sqlalchemy.orm import Session

from hyper_audit_alembic import history, record_id
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration import statements
from hyper_audit_alembic.migration.ops import DistributeAuditOp
from hyper_audit_alembic.migration.options import declared_citus
from hyper_audit_alembic.migration.render import KEEP_DISTRIBUTED
from hyper_audit_alembic.runtime.history.model import RecordVersion
from hyper_audit_alembic.runtime.history.resolve import describe_model, resolve

pytestmark = pytest.mark.pg

Row = tuple[Any, ...]


def run(connection: sa.Connection, *texts: str) -> None:
    for text in texts:
        connection.exec_driver_sql(text, execution_options={"no_parameters": True})


def install(connection: sa.Connection, *, distribute: bool) -> None:
    """op.install_audit() (and op.distribute_audit()), as their SQL."""
    run(connection, *statements.install_statements(None, None))
    if distribute:
        run(connection, *DistributeAuditOp().statements())


def last_id(connection: sa.Connection) -> int:
    return int(
        connection.exec_driver_sql("select coalesce(max(id), 0) from audit.record_version").scalar()
        or 0
    )


def audit_rows(
    connection: sa.Connection, after_id: int = 0, up_to_id: int | None = None
) -> list[Row]:
    """The audit rows with after_id < id <= up_to_id as (op, table_oid, schema, name,
    record_id, old_record_id, record, old_record), sorted (ids are not one order across
    the shards of a cluster)."""
    rows = connection.execute(
        sa.text(
            "select op::text, table_oid::bigint, table_schema::text, table_name::text,"
            " record_id, old_record_id, record, old_record"
            " from audit.record_version"
            " where id > :after and (cast(:up_to as bigint) is null or id <= :up_to)"
        ),
        {"after": after_id, "up_to": up_to_id},
    ).all()
    return sorted((tuple(row) for row in rows), key=repr)


# -- the Citus write path's row logic, on any server -----------------------------------

STATEMENTS = [
    "insert into {t} select g % 3, g, 'n' || g, g * 10 from generate_series(1, 6) g",
    "update {t} set name = name || '!' where id <= 4",
    "update {t} set hits = hits where id = 1",
    "update {t} set id = id + 100 where id = 5",
    "delete from {t} where id in (2, 3)",
    "insert into {t} select tenant, id + 1000, name, hits from {t} where id < 5",
]


@pytest.mark.parametrize("with_options", [False, True], ids=["plain", "exclude+skip_unchanged"])
def test_citus_row_change_writes_the_rows_of_the_single_node_path(
    engine: sa.Engine, with_options: bool
) -> None:
    """audit.citus_row_change on table b (per statement for INSERT and DELETE, per row for
    UPDATE, as on a cluster), given table a's oid, schema and name as its first
    arguments, writes for each statement exactly the audit rows that the single-node
    triggers of a write for the same statement on a (ids, records, names), with and
    without the options exclude and skip_unchanged."""
    with engine.begin() as connection:
        install(connection, distribute=False)
        run(
            connection,
            "create table a (tenant int, id int, name text, hits int, primary key (tenant, id))",
            "create table b (like a including all)",
        )
        if with_options:
            run(connection, "select audit.enable_tracking('a', '{hits}', true, false)")
        else:
            run(connection, "select audit.enable_tracking('a')")
        oid = connection.exec_driver_sql("select 'a'::regclass::oid::bigint").scalar()
        options = ["", "exclude=hits", "skip_unchanged"] if with_options else []
        arguments = ", ".join(f"'{a}'" for a in [oid, "public", "a", "tenant", "id", *options])
        # The triggers enable_tracking makes on a cluster (tracking_trigger_sql.sql).
        call = f"execute function audit.citus_row_change({arguments})"
        run(
            connection,
            "create trigger audit_citus_insert after insert on b"
            f" referencing new table as audit_new for each statement {call}",
            "create trigger audit_citus_delete after delete on b"
            f" referencing old table as audit_old for each statement {call}",
            f"create trigger audit_citus_update after update on b for each row {call}",
        )
        for statement in STATEMENTS:
            start = last_id(connection)
            run(connection, statement.format(t="a"))
            middle = last_id(connection)
            run(connection, statement.format(t="b"))
            by_a, by_b = audit_rows(connection, start, middle), audit_rows(connection, middle)
            assert by_b == by_a, statement
            if "hits = hits" in statement:
                assert len(by_a) == (0 if with_options else 1)
            elif "insert" in statement:
                assert {row[0] for row in by_a} == {"INSERT"} and len(by_a) in (6, 2)
        # The key change: one UPDATE row from the old record id to the new one.
        (moved,) = [r for r in audit_rows(connection) if r[0] == "UPDATE" and r[4] != r[5]][:1]
        assert moved[4] == record_id(oid, 2, 105) and moved[5] == record_id(oid, 2, 5)


def test_enable_tracking_of_a_citus_table_without_citus_names_the_fix(engine: sa.Engine) -> None:
    """op.distribute_audit() on a server without Citus: one error naming the fix."""
    with engine.begin() as connection:
        install(connection, distribute=False)
    with engine.begin() as connection, pytest.raises(sa.exc.DBAPIError) as raised:
        run(connection, *DistributeAuditOp().statements())
    assert raised.value.orig is not None
    assert raised.value.orig.pgcode == "0A000"  # type: ignore[attr-defined]
    assert "op.distribute_audit: the citus extension is not installed in this database" in str(
        raised.value
    )


def test_a_table_owner_cannot_attach_the_citus_trigger_with_another_tables_identity(
    engine: sa.Engine,
) -> None:
    """audit.citus_row_change takes the audited table's oid, schema and name from its
    trigger arguments (a shard's own are not the table's): a role that owns a table must not
    be able to attach it with another table's identity and so forge that table's history.
    Creating a trigger needs EXECUTE on its function, which nobody but the audit owner has."""
    with engine.begin() as connection:
        install(connection, distribute=False)
        run(connection, "create table victim (id int primary key)")
        victim = connection.exec_driver_sql("select 'victim'::regclass::oid::bigint").scalar()
        run(
            connection,
            "create role citus_forger",
            "grant create, usage on schema public to citus_forger",
            # As a reader of the audit trail has it (docs: the reader grants).
            "grant usage on schema audit to citus_forger",
        )
    try:
        with engine.begin() as connection:
            run(connection, "set role citus_forger", "create table mine (id int primary key)")
            with pytest.raises(sa.exc.DBAPIError) as raised:
                run(
                    connection,
                    "create trigger forged after update on mine for each row execute function"
                    f" audit.citus_row_change('{victim}', 'public', 'victim', 'id')",
                )
            assert raised.value.orig is not None
            assert raised.value.orig.pgcode == "42501"  # type: ignore[attr-defined]
            assert "permission denied for function audit.citus_row_change" in str(raised.value)
    finally:
        with engine.begin() as connection:
            run(
                connection,
                "drop owned by citus_forger cascade",
                "revoke usage on schema audit from citus_forger",
                "drop role citus_forger",
            )


def test_downgrade_to_5_refuses_while_a_table_is_tracked_the_citus_way(engine: sa.Engine) -> None:
    """Version 5 knows no Citus: with a table tracked by audit.citus_row_change the
    downgrade stops (55000) before changing anything; once it is gone, the downgrade goes
    through and the Citus functions go with version 6."""
    from hyper_audit_alembic import sql

    with engine.begin() as connection:
        install(connection, distribute=False)
        run(
            connection,
            "create table b (id int primary key)",
            "create trigger audit_citus_update after update on b for each row"
            " execute function audit.citus_row_change('1', 'public', 'b', 'id')",
        )
    with engine.begin() as connection, pytest.raises(sa.exc.DBAPIError) as raised:
        run(connection, *sql.downgrade_statements(6, 5))
    assert raised.value.orig is not None
    assert raised.value.orig.pgcode == "55000"  # type: ignore[attr-defined]
    assert (
        "audit schema downgrade to version 5: the audit trail is distributed with Citus"
        " (op.distribute_audit()), which version 5 cannot keep" in str(raised.value)
    )
    with engine.begin() as connection:
        assert connection.exec_driver_sql("select version from audit.schema_version").all() == [
            (6,)
        ]
        run(connection, "drop trigger audit_citus_update on b")
        run(connection, *sql.downgrade_statements(6, 5))
        assert connection.exec_driver_sql("select version from audit.schema_version").all() == [
            (5,)
        ]
        assert connection.exec_driver_sql(
            "select to_regprocedure('audit.citus_row_change()'),"
            " to_regprocedure('audit.citus_kind(regclass)')"
        ).all() == [(None, None)]


# -- a cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[CitusCluster]:
    yield from citus_cluster()


@pytest.fixture
def citus_url(cluster: CitusCluster) -> Iterator[str]:
    with fresh_citus_database(cluster) as url:
        yield url


@pytest.fixture
def citus_engine(citus_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(citus_url)
    yield engine
    engine.dispose()


ACC = (
    "create table acc (tenant int, id int, name text, primary key (tenant, id))",
    "select create_distributed_table('acc', 'tenant')",
    "create table loc (id int primary key, name text)",
)


def expected(
    oid: int, table: str, op: str, new: dict | None, old: dict | None, key: list[str]
) -> Row:
    def rid(row: dict | None) -> Any:
        return None if row is None else record_id(oid, *(row[k] for k in key))

    return (op, oid, "public", table, rid(new), rid(old), new, old)


def test_distributed_and_local_tables_are_recorded_as_on_one_node(
    citus_engine: sa.Engine,
) -> None:
    """Writes of a distributed table (on the workers' shards) and of a coordinator-local
    table: the audit rows carry the coordinator's oid, schema and name and the single-node
    record ids; statements over several shards lose nothing; a key change is one UPDATE."""
    with citus_engine.begin() as connection:
        run(connection, *ACC)
    with citus_engine.begin() as connection:
        install(connection, distribute=True)
        run(
            connection, "select audit.enable_tracking('acc')", "select audit.enable_tracking('loc')"
        )
        acc, loc = connection.exec_driver_sql(
            "select 'acc'::regclass::oid::bigint, 'loc'::regclass::oid::bigint"
        ).one()
    with citus_engine.begin() as connection:
        # The triggers are on the shards, on both workers (seen once committed).
        shards = (
            connection.execution_options(no_parameters=True)
            .exec_driver_sql(
                "select count(*) from run_command_on_shards('acc',"
                " $$select count(*) from pg_trigger where tgrelid = '%s'::regclass"
                " and tgfoid = 'audit.citus_row_change()'::regprocedure$$)"
                " where result = '3'"
            )
            .scalar()
        )
        assert shards == 4

    def rows_of(statement: str) -> list[Row]:
        """The audit rows ``statement`` wrote (by content: ids are per node on a cluster)."""
        with citus_engine.begin() as connection:
            run(connection, statement)
        with citus_engine.connect() as connection:
            return [r for r in audit_rows(connection) if r not in before]

    with citus_engine.connect() as connection:
        before = audit_rows(connection)
    key = ["tenant", "id"]
    names = {i: f"n{i}" for i in range(1, 9)}
    got = rows_of("insert into acc select g % 4, g, 'n' || g from generate_series(1, 8) g")
    assert got == sorted(
        (
            expected(acc, "acc", "INSERT", {"tenant": i % 4, "id": i, "name": names[i]}, None, key)
            for i in range(1, 9)
        ),
        key=repr,
    )
    before += got
    # A multi-shard UPDATE.
    got = rows_of("update acc set name = name || '!' where id <= 6")
    assert got == sorted(
        (
            expected(
                acc,
                "acc",
                "UPDATE",
                {"tenant": i % 4, "id": i, "name": names[i] + "!"},
                {"tenant": i % 4, "id": i, "name": names[i]},
                key,
            )
            for i in range(1, 7)
        ),
        key=repr,
    )
    before += got
    # A key change (not of the distribution column, which Citus does not change).
    got = rows_of("update acc set id = 107 where tenant = 3 and id = 7")
    assert got == [
        expected(
            acc,
            "acc",
            "UPDATE",
            {"tenant": 3, "id": 107, "name": "n7"},
            {"tenant": 3, "id": 7, "name": "n7"},
            key,
        )
    ]
    before += got
    # INSERT ... SELECT over every shard, and a multi-shard DELETE.
    got = rows_of("insert into acc select tenant, id + 1000, name from acc where id <= 2")
    assert got == sorted(
        (
            expected(
                acc,
                "acc",
                "INSERT",
                {"tenant": i % 4, "id": i + 1000, "name": names[i] + "!"},
                None,
                key,
            )
            for i in (1, 2)
        ),
        key=repr,
    )
    before += got
    got = rows_of("delete from acc where id in (3, 4, 8)")
    assert got == sorted(
        (
            expected(
                acc,
                "acc",
                "DELETE",
                None,
                {"tenant": i % 4, "id": i, "name": names[i] + ("!" if i <= 6 else "")},
                key,
            )
            for i in (3, 4, 8)
        ),
        key=repr,
    )
    before += got
    # A table on the coordinator, and TRUNCATE of both (one row each, written on the
    # coordinator, not one per shard).
    got = rows_of("insert into loc values (1, 'a'), (2, 'b'); update loc set id = 3 where id = 2")
    assert got == sorted(
        [
            expected(loc, "loc", "INSERT", {"id": 1, "name": "a"}, None, ["id"]),
            expected(loc, "loc", "INSERT", {"id": 2, "name": "b"}, None, ["id"]),
            expected(loc, "loc", "UPDATE", {"id": 3, "name": "b"}, {"id": 2, "name": "b"}, ["id"]),
        ],
        key=repr,
    )
    before += got
    got = rows_of("truncate acc, loc")
    assert got == sorted(
        [
            ("TRUNCATE", oid, "public", name, None, None, None, None)
            for oid, name in ((acc, "acc"), (loc, "loc"))
        ],
        key=repr,
    )
    with citus_engine.connect() as connection:
        # The record ids are the coordinator's audit.to_record_id, bit for bit.
        assert connection.exec_driver_sql(
            "select count(*) filter (where record_id is distinct from"
            " case when record is not null then audit.to_record_id(table_oid,"
            " case table_name when 'acc' then '{tenant,id}'::text[] else '{id}' end, record) end),"
            " count(*) from audit.record_version"
        ).one() == (0, 25)
        # A rolled-back statement leaves no audit row on any shard.
    with pytest.raises(sa.exc.IntegrityError), citus_engine.begin() as connection:
        run(connection, "insert into acc values (9, 9, 'x')", "insert into acc values (9, 9, 'y')")
    with citus_engine.connect() as connection:
        assert (
            connection.exec_driver_sql("select count(*) from audit.record_version").scalar() == 25
        )


def test_history_of_a_record_is_routed_to_one_shard(citus_engine: sa.Engine) -> None:
    """history() follows a record through a key change; its query names the table's oid,
    so Citus sends it to the one shard that holds the table's audit rows (Task Count: 1)."""
    with citus_engine.begin() as connection:
        run(connection, *ACC)
    with citus_engine.begin() as connection:
        install(connection, distribute=True)
        run(
            connection,
            "select audit.enable_tracking('acc')",
        )
    # (The workers write audit rows over connections of their own, which see the audit
    # table's shards once the transaction that made them has committed.)
    with citus_engine.begin() as connection:
        run(
            connection,
            "insert into acc select g % 4, g, 'n' || g from generate_series(1, 8) g",
            "update acc set id = 107 where tenant = 3 and id = 7",
            "update acc set name = 'later' where id = 107",
        )
    with Session(citus_engine) as session:
        found = history(session, "acc", (3, 107))
        assert [(v.op, v.record) for v in found] == [
            ("INSERT", {"tenant": 3, "id": 7, "name": "n7"}),
            ("UPDATE", {"tenant": 3, "id": 107, "name": "n7"}),
            ("UPDATE", {"tenant": 3, "id": 107, "name": "later"}),
        ]
        target = resolve(session, describe_model("acc"))
        assert target.distributed and target.oids == (target.current_oid,)
        wanted = record_id(target.current_oid, 3, 107)
        rv = RecordVersion
        query = (
            sa.select(rv)
            .where(sa.or_(rv.record_id.in_([wanted]), rv.old_record_id.in_([wanted])))
            .where(target.row_filter())
        )
        compiled = query.compile(
            dialect=citus_engine.dialect, compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(session.execute(sa.text(f"explain {compiled}")).scalars())
        assert "Task Count: 1" in plan, plan
        # Without the table: every shard.
        unrouted = (
            sa.select(rv)
            .where(rv.record_id == wanted)
            .compile(dialect=citus_engine.dialect, compile_kwargs={"literal_binds": True})
        )
        plan = "\n".join(session.execute(sa.text(f"explain {unrouted}")).scalars())
        assert "Task Count: 4" in plan, plan


def test_the_partitioned_layout_is_distributed_with_its_partitions(citus_engine: sa.Engine) -> None:
    """op.install_audit(partitioned=True), then op.distribute_audit(): the key becomes
    (table_oid, id, ts), every partition is distributed, writes are recorded."""
    with citus_engine.begin() as connection:
        run(connection, *ACC)
    with citus_engine.begin() as connection:
        run(connection, *statements.install_statements(None, {}))
        run(connection, *DistributeAuditOp().statements())
        run(connection, "select audit.enable_tracking('acc')")
    with citus_engine.begin() as connection:
        run(connection, "insert into acc select g % 4, g, 'n' from generate_series(1, 8) g")
    with citus_engine.connect() as connection:
        assert (
            connection.exec_driver_sql(
                "select pg_get_constraintdef(oid) from pg_constraint"
                " where conrelid = 'audit.record_version'::regclass and contype = 'p'"
            ).scalar()
            == "PRIMARY KEY (table_oid, id, ts)"
        )
        assert connection.exec_driver_sql(
            "select bool_and(exists (select from citus_tables t"
            " where t.table_name = i.inhrelid::regclass and t.citus_table_type = 'distributed'))"
            " from pg_inherits i where i.inhparent = 'audit.record_version'::regclass"
        ).scalar()
        assert [row[0] for row in audit_rows(connection)] == ["INSERT"] * 8


def test_a_tracked_distributed_table_can_be_renamed(citus_engine: sa.Engine) -> None:
    """ALTER TABLE ... RENAME of a tracked distributed table works (the event trigger leaves
    Citus-tracked tables alone); op.enable_tracking() then records under the new name."""
    with citus_engine.begin() as connection:
        run(connection, *ACC)
    with citus_engine.begin() as connection:
        install(connection, distribute=True)
        run(connection, "select audit.enable_tracking('acc')")
    with citus_engine.begin() as connection:
        run(connection, "alter table acc rename to account")
    with citus_engine.begin() as connection:
        run(connection, "select audit.enable_tracking('account')")
    with citus_engine.begin() as connection:
        run(connection, "insert into account values (1, 1, 'a')")
    with citus_engine.connect() as connection:
        oid = connection.exec_driver_sql("select 'account'::regclass::oid::bigint").scalar()
        assert audit_rows(connection) == [
            expected(
                oid,
                "account",
                "INSERT",
                {"tenant": 1, "id": 1, "name": "a"},
                None,
                ["tenant", "id"],
            )
        ]


def test_bad_input_on_a_cluster(citus_engine: sa.Engine) -> None:
    """A distributed table tracked before op.distribute_audit(), a reference table, and
    on_replica on a cluster: each one error naming the table and the fix."""
    with citus_engine.begin() as connection:
        run(connection, *ACC)
        run(
            connection,
            "create table ref (id int primary key)",
            "select create_reference_table('ref')",
        )
    with citus_engine.begin() as connection:
        install(connection, distribute=False)

    def error(statement: str) -> str:
        with pytest.raises(sa.exc.DBAPIError) as raised, citus_engine.begin() as connection:
            run(connection, statement)
        assert raised.value.orig.pgcode == "0A000"  # type: ignore[union-attr]
        return str(raised.value.orig).splitlines()[0]

    assert error("select audit.enable_tracking('acc')") == (
        "audit.enable_tracking: public.acc is a Citus table, but audit.record_version is not"
        " distributed, so its shards cannot write audit rows"
    )
    with citus_engine.begin() as connection:
        run(connection, *DistributeAuditOp().statements())
    assert error("select audit.enable_tracking('ref')") == (
        "audit.enable_tracking: public.ref is a Citus reference table, whose triggers fire on"
        " every node (one audit row per copy)"
    )
    assert error("select audit.enable_tracking('acc', '{}', false, true)") == (
        "audit.enable_tracking: on_replica cannot track public.acc: audit.record_version is a"
        " Citus distributed table"
    )


MIGRATION = '''\
"""citus

Revision ID: c1
Revises:
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "c1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.install_audit()
    op.create_table(
        "account",
        sa.Column("tenant", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id"),
    )
    op.execute("select create_distributed_table('account', 'tenant')")
    op.distribute_audit()
    op.enable_tracking("account")


def downgrade() -> None:
    op.disable_tracking("account")
    op.drop_table("account")
'''

MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True

    tenant: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
"""


def _state(engine: sa.Engine) -> tuple[Any, ...]:
    """What the migration made: the audit table's distribution and key, the account
    table's triggers (arguments with its oid in place), and the audit rows of a few writes."""
    with engine.begin() as connection:
        connection = connection.execution_options(no_parameters=True)
        run(
            connection,
            "insert into account values (1, 1, 'a'), (2, 2, 'b')",
            "update account set name = 'c'",
            "update account set id = 3 where tenant = 2",
        )
    # The audit rows a worker wrote for a shard on another node are seen once committed:
    # the worker writes them over a connection of its own.
    with engine.begin() as connection:
        connection = connection.execution_options(no_parameters=True)
        oid = connection.exec_driver_sql("select 'account'::regclass::oid::text").scalar()
        distribution = connection.exec_driver_sql(
            "select citus_table_type, distribution_column from citus_tables"
            " where table_name = 'audit.record_version'::regclass"
        ).one()
        key = connection.exec_driver_sql(
            "select pg_get_constraintdef(oid) from pg_constraint"
            " where conrelid = 'audit.record_version'::regclass and contype = 'p'"
        ).scalar()
        triggers = [
            (name, function, ["<oid>" if a == oid else a for a in args])
            for name, function, args in connection.exec_driver_sql(
                "select tgname::text, tgfoid::regproc::text, audit.trigger_argument_list(tgargs)"
                " from pg_trigger where tgrelid = 'account'::regclass"
                " and tgname like 'audit%' order by 1"
            )
        ]
        rows = [
            (
                op,
                schema,
                name,
                new_id == record_id(int(oid), record["tenant"], record["id"]),
                json.dumps(record),
                json.dumps(old),
            )
            for op, _, schema, name, new_id, _, record, old in audit_rows(connection)
        ]
    return distribution, key, triggers, sorted(rows, key=repr)


def test_migration_online_offline_and_check(
    cluster: CitusCluster, citus_url: str, tmp_path: Path
) -> None:
    """A migration with op.distribute_audit(): online, and its offline SQL (alembic upgrade
    --sql) run with psql on a fresh cluster database, give the same audit table, triggers
    and audit rows; alembic check is clean after the upgrade."""
    project = Project.create(tmp_path / "project", citus_url, MODELS)
    (project.versions / "c1_citus.py").write_text(MIGRATION)
    project.upgrade()
    assert project.check().strip() == "No new upgrade operations detected."
    offline = project.upgrade(sql=True)
    assert "create_distributed_table('audit.record_version', 'table_oid')" in offline
    with fresh_citus_database(cluster) as offline_url:
        name = offline_url.rsplit("/", 1)[1]
        run_sql(cluster.coordinator, name, offline)
        online_engine, offline_engine = sa.create_engine(citus_url), sa.create_engine(offline_url)
        try:
            online, replayed = _state(online_engine), _state(offline_engine)
        finally:
            online_engine.dispose()
            offline_engine.dispose()
    assert online == replayed
    distribution, key, triggers, rows = online
    assert distribution == ("distributed", "table_oid")
    assert key == "PRIMARY KEY (table_oid, id)"
    citus_arguments = ["<oid>", "public", "account", "tenant", "id"]
    assert triggers == [
        ("audit_citus_delete", "audit.citus_row_change", citus_arguments),
        ("audit_citus_insert", "audit.citus_row_change", citus_arguments),
        ("audit_citus_update", "audit.citus_row_change", citus_arguments),
        ("audit_truncate", "audit.record_truncate", []),
    ]
    assert len(rows) == 5 and all(row[3] for row in rows)


def test_distribute_audit_and_its_reverse() -> None:
    """The reverse (autogenerate's downgrade) runs nothing and says how to undo by hand."""
    op = DistributeAuditOp()
    assert op.to_diff_tuple() == ("distribute_audit",)
    assert op.statements()[0].startswith("do $$")
    back = op.reverse()
    assert back.to_diff_tuple() == ("distribute_audit", "undoing") and back.statements() == []
    assert back.reverse().to_diff_tuple() == ("distribute_audit",)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"citus": "yes"},
            "context.configure(hyper_audit={'citus': ...}) takes True or False, not 'yes'",
        ),
        (
            {"citus": True, "timescale": {}},
            "context.configure(hyper_audit=...) declares both 'citus' and 'timescale': Citus"
            " cannot distribute a hypertable; keep one of them",
        ),
    ],
)
def test_a_bad_citus_declaration_names_the_fix(declared: dict[str, Any], message: str) -> None:
    with pytest.raises(AuditOperationError) as raised:
        declared_citus({"hyper_audit": declared})
    assert str(raised.value) == f"hyper_audit: {message}"


def test_declared_citus_without_citus_names_the_fix(engine: sa.Engine) -> None:
    """hyper_audit={'citus': True} in env.py over a server without Citus: autogenerate stops
    with the fix."""
    with engine.begin() as connection:
        install(connection, distribute=False)
    with engine.connect() as connection, pytest.raises(CommandError) as raised:
        autogenerate(connection, sa.MetaData(), hyper_audit={"citus": True})
    assert str(raised.value) == (
        "hyper_audit: env.py declares hyper_audit={'citus': True}, but the citus extension is"
        " not installed in this database. Create it (and add the workers) first, or remove"
        " 'citus' from env.py."
    )


def test_autogenerate_distributes_where_env_py_declares_citus(citus_engine: sa.Engine) -> None:
    """hyper_audit={'citus': True}: over nothing, op.distribute_audit() follows
    op.install_audit() (before the tracking); over an installed plain audit table it is
    proposed alone; over a distributed one nothing is (and no declaration: nothing either)."""
    metadata = sa.MetaData()
    sa.Table(
        "account",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        info={"audited": True},
    )
    with citus_engine.connect() as connection:
        upgrade, downgrade = autogenerate(connection, metadata, hyper_audit={"citus": True})
    assert upgrade[:2] == ["op.install_audit()", "op.distribute_audit()"]
    assert upgrade[-1] == "op.enable_tracking('account')"
    assert downgrade[-2:] == [KEEP_DISTRIBUTED, "op.uninstall_audit(keep_history=True)"]
    with citus_engine.begin() as connection:
        install(connection, distribute=False)
        run(connection, "create table account (id int primary key)")
        run(connection, "select audit.enable_tracking('account')")
    with citus_engine.connect() as connection:
        upgrade, downgrade = autogenerate(connection, metadata, hyper_audit={"citus": True})
        assert (upgrade, downgrade) == (["op.distribute_audit()"], [KEEP_DISTRIBUTED])
        assert autogenerate(connection, metadata) == ([], [])
    with citus_engine.begin() as connection:
        run(connection, *DistributeAuditOp().statements())
    with citus_engine.connect() as connection:
        # The table tracked before is tracked again, by the Citus write path.
        assert connection.exec_driver_sql(
            "select array_agg(tgname::text order by tgname) from pg_trigger"
            " where tgrelid = 'account'::regclass and not tgisinternal"
        ).scalar() == [
            "audit_citus_delete",
            "audit_citus_insert",
            "audit_citus_update",
            "audit_truncate",
        ]
        assert autogenerate(connection, metadata, hyper_audit={"citus": True}) == ([], [])
        assert autogenerate(connection, metadata) == ([], [])
