"""Offline mode (``alembic upgrade --sql``): the emitted SQL, run with psql on a fresh
database, gives the same database as the operations run online.

Each stage runs the same operations online on the test's database and offline (SQL
text applied with psql) on a second database, then compares a catalog snapshot and the
audit rows the same statements write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import (
    AWKWARD_NAMES,
    Db,
    OpScript,
    apply_sql,
    catalog_snapshot,
    connect,
    create_awkward_tables,
    extra_database,
    offline_sql,
    psql_error,
    run_online,
    write_awkward_rows,
)

from hyper_audit_alembic import sql as audit_sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.migration import ops as audit_ops
from hyper_audit_alembic.migration.statements import partitioned_refresh


class Twins:
    """The online database and its offline twin, driven in step."""

    def __init__(
        self, pg_server: ThrowawayPostgres, engine: sa.Engine, online: Db, offline: Db
    ) -> None:
        self.pg_server = pg_server
        self.engine = engine
        self.online = online
        self.offline = offline

    @property
    def both(self) -> tuple[Db, Db]:
        return self.online, self.offline

    def run(self, statements: str) -> None:
        for db in self.both:
            db.run(statements)

    def migrate(self, script: OpScript) -> str:
        """Run ``script`` online and offline; returns the offline SQL."""
        text = offline_sql(script)
        # The SQL must not depend on env.py's literal_binds / paramstyle settings.
        assert offline_sql(script, env_py_settings=False) == text
        run_online(self.engine, script)
        apply_sql(self.pg_server, self.offline.conn.info.dbname, text)
        return text

    def assert_same(self) -> None:
        online = catalog_snapshot(self.online)
        assert online == catalog_snapshot(self.offline)
        assert self.online.normalized_audit_rows() == self.offline.normalized_audit_rows()


@pytest.fixture
def twins(pg_server: ThrowawayPostgres, engine: sa.Engine, db_url: str) -> Iterator[Twins]:
    offline_name = f"offline_{uuid.uuid4().hex[:12]}"
    with (
        extra_database(pg_server, offline_name),
        connect(db_url) as online,
        connect(pg_server.url(offline_name)) as offline,
    ):
        yield Twins(pg_server, engine, online, offline)


SETUP = """
    create table account (id int primary key, name text not null);
    create table pairs (b text, a int, primary key (a, b));
    create table short_lived (id int primary key);
    create table never_tracked (id int primary key);
"""

WRITES = """
    insert into account values (1, 'Foo Barsworth'), (2, 'Zoë 東京');
    update account set name = 'Foo Barsworthy' where id = 1;
    update account set id = 3 where id = 2;
    delete from account where id = 1;
    truncate account;
    insert into pairs values ('x', 7), ('y', 8);
    insert into short_lived values (1);
    insert into never_tracked values (1);
"""


def install_and_track(op: Operations) -> None:
    op.install_audit()
    op.enable_tracking("account")
    op.enable_tracking("pairs", schema="public")
    op.enable_tracking("short_lived")
    op.disable_tracking("short_lived")
    op.disable_tracking("never_tracked")
    for schema, table in AWKWARD_NAMES:
        op.enable_tracking(table, schema=schema)


def test_offline_equals_online_through_the_life_cycle(twins: Twins) -> None:
    twins.run(SETUP)
    for db in twins.both:
        create_awkward_tables(db)
    twins.assert_same()

    # 1. Install and track.
    twins.migrate(install_and_track)
    twins.assert_same()
    twins.run(WRITES)
    for db in twins.both:
        write_awkward_rows(db, "first")
    twins.assert_same()
    assert len(twins.online.audit_rows()) == 8 + 2 * len(AWKWARD_NAMES)

    # 2. Uninstalling with history is refused, online and offline, and changes nothing.
    before = catalog_snapshot(twins.online)
    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(twins.engine, lambda op: op.uninstall_audit())
    assert refused.value.orig.pgcode == "2BP01"  # type: ignore[union-attr]
    error = psql_error(
        twins.pg_server,
        twins.offline.conn.info.dbname,
        offline_sql(lambda op: op.uninstall_audit()),
    )
    assert (
        "ERROR:  uninstall_audit: audit.record_version holds recorded history; "
        "refusing to destroy it\n"
    ) in error
    assert "HINT:  Use op.uninstall_audit(keep_history=True)" in error
    assert catalog_snapshot(twins.online) == before
    twins.assert_same()

    # 3. Keep the history, remove the rest.
    twins.migrate(lambda op: op.uninstall_audit(keep_history=True))
    twins.assert_same()
    twins.run("insert into account values (10, 'not recorded')")
    twins.assert_same()

    # 4. Install again over the kept history, track again.
    def reinstall(op: Operations) -> None:
        op.install_audit()
        op.enable_tracking("account")

    twins.migrate(reinstall)
    twins.run("update account set name = 'recorded again'")
    twins.assert_same()
    assert twins.online.audit_rows()[-1][0] == "UPDATE"

    # 5. Drop the history.
    twins.migrate(lambda op: op.uninstall_audit(drop_history=True))
    assert twins.online.one("select to_regnamespace('audit')") is None
    assert catalog_snapshot(twins.online) == catalog_snapshot(twins.offline)

    # 6. Install then uninstall an empty audit: back to where step 5 left off.
    after_drop = catalog_snapshot(twins.online)
    twins.migrate(lambda op: (op.install_audit(), op.enable_tracking("account")))
    twins.assert_same()
    twins.migrate(lambda op: op.uninstall_audit())
    assert catalog_snapshot(twins.online) == after_drop
    assert catalog_snapshot(twins.offline) == after_drop


def test_offline_supabase_install_equals_online(twins: Twins) -> None:
    twins.run(
        """
        create schema auth;
        create function auth.uid() returns uuid language sql stable
            as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
        create function auth.role() returns text language sql stable
            as $$ select nullif(current_setting('request.jwt.claim.role', true), '') $$;
        create table account (id int primary key, name text not null);
        """
    )
    twins.migrate(lambda op: (op.install_audit(), op.enable_tracking("account")))
    twins.assert_same()
    who = "5b0c7f49-6a39-4f0e-8a53-3c5c1d8f2e10"
    twins.run(
        f"set request.jwt.claim.sub = '{who}'; set request.jwt.claim.role = 'authenticated';"
        " insert into account values (1, 'a')"
    )
    for db in twins.both:
        assert db.rows("select auth_uid::text, auth_role from audit.record_version") == [
            (who, "authenticated")
        ]


def test_offline_install_is_the_sql_file_verbatim() -> None:
    # Then the partitioned layout's functions, where that layout is in use.
    statements = [*audit_sql.install_statements(), partitioned_refresh()]
    expected = "".join(statement + ";\n\n" for statement in statements)
    assert offline_sql(lambda op: op.install_audit()) == f"BEGIN;\n\n{expected}COMMIT;\n\n"


def test_offline_uninstall_text() -> None:
    def text(*steps: str) -> str:
        body = "".join(
            statement + ";\n\n" for step in steps for statement in audit_sql.statements(step)
        )
        return f"BEGIN;\n\n{body}COMMIT;\n\n"

    assert offline_sql(lambda op: op.uninstall_audit()) == text(
        "refuse_if_history", "retention_to_policy", "remove_functions", "drop_history"
    )
    assert offline_sql(lambda op: op.uninstall_audit(keep_history=True)) == text(
        "retention_to_policy", "remove_functions"
    )
    assert offline_sql(lambda op: op.uninstall_audit(drop_history=True)) == text(
        "retention_to_policy", "remove_functions", "drop_history"
    )


def test_offline_tracking_text_with_awkward_names() -> None:
    def script(op: Operations) -> None:
        op.enable_tracking("Members", schema="xyz")
        op.enable_tracking("100% (%(name)s)", schema="pct%s")
        op.disable_tracking(":name ::text $1 ?", schema="colon:name")
        op.disable_tracking("O'Brien")
        op.enable_tracking('we"ird', schema="Mixed Case")

    # Each op's statement verbatim (its exact text: test_ops.test_enable_tracking_statement_text).
    statements = [
        audit_ops.EnableTrackingOp("Members", schema="xyz"),
        audit_ops.EnableTrackingOp("100% (%(name)s)", schema="pct%s"),
        audit_ops.DisableTrackingOp(":name ::text $1 ?", schema="colon:name"),
        audit_ops.DisableTrackingOp("O'Brien"),
        audit_ops.EnableTrackingOp('we"ird', schema="Mixed Case"),
    ]
    literals = [
        """'xyz."Members"'""",
        """'"pct%s"."100% (%(name)s)"'""",
        """'"colon:name".":name ::text $1 ?"'""",
        """'"O''Brien"'""",
        """'"Mixed Case"."we""ird"'""",
    ]
    expected = []
    for operation, literal in zip(statements, literals, strict=True):
        text = operation.statement(None)  # type: ignore[arg-type]
        assert f"    target constant text := {literal};\n" in text
        expected.append(text + ";\n\n")
    for env_py_settings in (True, False):
        assert offline_sql(script, env_py_settings=env_py_settings) == (
            "BEGIN;\n\n" + "".join(expected) + "COMMIT;\n\n"
        )
