"""Shared helpers for the audit SQL, operation and offline tests.

Plain psycopg2 connections in autocommit mode run the behaviour scenarios, so that every
statement is its own transaction (as an application's would be) and a failing statement
leaves the connection usable. Alembic operations run through a real ``MigrationContext``,
online on a SQLAlchemy connection or offline into a text buffer.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from psycopg2 import sql as pgsql

import hyper_audit_alembic.migration.ops  # noqa: F401  (registers op.install_audit & co.)
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.sqltext import qualified_name

NAMESPACE = uuid.UUID("fd62bc3d-8d6e-43c2-919c-802ba3762271")

AUDIT_COLUMNS = (
    "op",
    "record_id",
    "old_record_id",
    "table_oid",
    "table_schema",
    "table_name",
    "record",
    "old_record",
)

OpScript = Callable[[Operations], None]


def record_id(table_oid: int, *key_values: str | None) -> uuid.UUID:
    """The stable record id, computed in Python the way the documentation tells users to."""
    text = json.dumps([str(table_oid), *key_values], ensure_ascii=False)
    return uuid.uuid5(NAMESPACE, text)


class Db:
    """An autocommit psycopg2 connection with small conveniences."""

    def __init__(self, url: str) -> None:
        parsed = sa.engine.make_url(url)
        self.conn = psycopg2.connect(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            dbname=parsed.database,
        )
        self.conn.autocommit = True

    def close(self) -> None:
        self.conn.close()

    def run(self, statement: str, params: Sequence[Any] | None = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)

    def rows(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    def one(self, statement: str, params: Sequence[Any] | None = None) -> Any:
        (row,) = self.rows(statement, params)
        (value,) = row
        return value

    def error(self, statement: str, params: Sequence[Any] | None = None) -> psycopg2.Error:
        """The error ``statement`` raises (the test fails if it succeeds)."""
        try:
            self.run(statement, params)
        except psycopg2.Error as exc:
            if not self.conn.autocommit:
                self.conn.rollback()
            return exc
        raise AssertionError(f"no error from: {statement}")

    def oid(self, qualified: str) -> int:
        return int(self.one("select %s::regclass::oid", [qualified]))

    def take_notices(self) -> list[str]:
        notices = [notice.strip() for notice in self.conn.notices]
        del self.conn.notices[:]
        return notices

    def audit_rows(self) -> list[tuple[Any, ...]]:
        """Every audit row in insertion order, as (op, record_id, ..., old_record)."""
        found = self.rows(
            "select op::text, record_id, old_record_id, table_oid::bigint, table_schema::text,"
            " table_name::text, record, old_record from audit.record_version order by id"
        )
        return [
            (
                op,
                None if rid is None else uuid.UUID(rid),
                None if old_rid is None else uuid.UUID(old_rid),
                oid,
                schema,
                name,
                rec,
                old_rec,
            )
            for op, rid, old_rid, oid, schema, name, rec, old_rec in found
        ]

    def normalized_audit_rows(self) -> list[tuple[Any, ...]]:
        """Audit rows with the database-specific oids replaced by names.

        Each record id is checked against the Python computation from the row's own
        record and the table's primary key, then replaced by ``(table, key values)``, so
        the rows of two databases can be compared.
        """
        if not self.one("select to_regclass('audit.record_version') is not null"):
            return []
        keys = dict(
            self.rows(
                "select i.indrelid::bigint, array_agg(a.attname::text order by a.attnum)"
                " from pg_index i join pg_attribute a"
                " on a.attrelid = i.indrelid and a.attnum = any (i.indkey)"
                " where i.indisprimary group by i.indrelid"
            )
        )
        normalized = []
        for op, rid, old_rid, oid, schema, name, rec, old_rec in self.audit_rows():
            ids = []
            for given, data in ((rid, rec), (old_rid, old_rec)):
                if data is None:
                    assert given is None
                    ids.append(None)
                    continue
                values = [_as_text(data[col]) for col in keys[oid]]
                assert given == record_id(oid, *values), (op, schema, name, data)
                ids.append((schema, name, *values))
            normalized.append((op, *ids, schema, name, rec, old_rec))
        return normalized


def _as_text(value: Any) -> str | None:
    """What ``jsonb ->> key`` gives for a decoded JSON value."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@contextmanager
def connect(url: str) -> Iterator[Db]:
    db = Db(url)
    try:
        yield db
    finally:
        db.close()


# --- Names that need quoting ------------------------------------------------------------

#: (schema, table) pairs that need quoting, or stress literal and paramstyle handling.
AWKWARD_NAMES: list[tuple[str | None, str]] = [
    ("xyz", "Members"),
    (None, "UPPER"),
    (None, "with space"),
    ("Mixed Case", 'we"ird'),
    ("semi;colon", "x; drop table account; --"),
    ("ünïcödé", "Tâblé 東京"),
    (None, "O'Brien"),
    ("pct%s", "100% (%(name)s)"),
    ("colon:name", ":name ::text $1 ?"),
    ("s", "t" * 63),
    ("é" * 31 + "s", "ü" * 31 + "t"),  # 63 bytes each
]


def create_awkward_tables(db: Db) -> None:
    """The awkward tables, quoted by psycopg2 (independently of our quoting)."""
    for schema, table in AWKWARD_NAMES:
        assert len(table.encode()) <= 63 and len((schema or "").encode()) <= 63
        name = pgsql.Identifier(*([schema] if schema else []), table)
        if schema:
            db.run(pgsql.SQL("create schema if not exists {}").format(pgsql.Identifier(schema)))
        db.run(pgsql.SQL("create table {} (id int primary key, v text)").format(name))


def awkward_oid(db: Db, schema: str | None, table: str) -> int:
    return int(
        db.one(
            "select c.oid::bigint from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = %s",
            [schema or "public", table],
        )
    )


def write_awkward_rows(db: Db, value: str) -> None:
    for schema, table in AWKWARD_NAMES:
        name = pgsql.Identifier(*([schema] if schema else []), table)
        db.run(pgsql.SQL("insert into {} values (1, {})").format(name, pgsql.Literal(value)))
        db.run(pgsql.SQL("delete from {}").format(name))


# --- Alembic operations ---------------------------------------------------------------


def run_online(engine: sa.Engine, script: OpScript) -> list[str]:
    """Run ``script`` through Alembic on a live connection, in one transaction.

    Returns the notices the server sent (SQLAlchemy's psycopg2 dialect takes them off
    the connection and logs them on its logger at INFO level).
    """
    with capture_notices() as notices, engine.begin() as connection:
        script(Operations(MigrationContext.configure(connection)))
    return notices


@contextmanager
def capture_notices() -> Iterator[list[str]]:
    logger = logging.getLogger("sqlalchemy.dialects.postgresql")
    notices: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notices.append(record.getMessage())

    handler = Collect()
    saved = (logger.level, logger.disabled, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield notices
    finally:
        logger.removeHandler(handler)
        logger.level, logger.disabled, logger.propagate = saved


def offline_sql(script: OpScript, *, env_py_settings: bool = True) -> str:
    """The SQL that ``alembic upgrade --sql`` would write for ``script``.

    ``env_py_settings`` mirrors Alembic's generic env.py (literal_binds, named
    paramstyle); without it the context has Alembic's bare defaults.
    """
    buffer = io.StringIO()
    opts: dict[str, Any] = {"as_sql": True, "output_buffer": buffer}
    kwargs: dict[str, Any] = {}
    if env_py_settings:
        opts["literal_binds"] = True
        kwargs["dialect_opts"] = {"paramstyle": "named"}
    context = MigrationContext.configure(dialect_name="postgresql", opts=opts, **kwargs)
    with context.begin_transaction():
        script(Operations(context))
    return buffer.getvalue()


def apply_sql(pg_server: ThrowawayPostgres, dbname: str, sql: str) -> None:
    """Run SQL text with psql, as a user applies ``alembic upgrade --sql`` output."""
    done = pg_server.psql(dbname, input=sql)
    assert done.returncode == 0, done.stderr


def psql_error(pg_server: ThrowawayPostgres, dbname: str, sql: str) -> str:
    """The error psql reports for SQL text that must fail."""
    done = pg_server.psql(dbname, input=sql)
    assert done.returncode != 0, "the SQL should have failed"
    return done.stderr


@contextmanager
def extra_database(pg_server: ThrowawayPostgres, name: str) -> Iterator[str]:
    """A fresh database beside the test's own, dropped afterwards."""
    apply_sql(pg_server, "postgres", f"create database {qualified_name(name)}")
    try:
        yield name
    finally:
        apply_sql(pg_server, "postgres", f"drop database if exists {qualified_name(name)}")


# --- Catalog snapshot -----------------------------------------------------------------

_USER_NAMESPACES = (
    "n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')"
    " and n.nspname not like 'pg_temp_%' and n.nspname not like 'pg_toast_temp_%'"
)

SNAPSHOT_QUERIES: dict[str, str] = {
    "schemas": f"""
        select n.nspname::text, n.nspowner::regrole::text, n.nspacl::text
        from pg_namespace n where {_USER_NAMESPACES}
    """,
    "extensions": """
        select e.extname::text, n.nspname::text, e.extversion
        from pg_extension e join pg_namespace n on n.oid = e.extnamespace
    """,
    "types": f"""
        select n.nspname::text, t.typname::text, t.typtype::text,
            (select array_agg(e.enumlabel::text order by e.enumsortorder)
             from pg_enum e where e.enumtypid = t.oid)
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where {_USER_NAMESPACES} and t.typtype in ('e', 'd', 'c')
            and (t.typtype <> 'c' or
                 (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')
    """,
    "relations": f"""
        select n.nspname::text, c.relname::text, c.relkind::text, c.relacl::text,
            c.relowner::regrole::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where {_USER_NAMESPACES}
    """,
    "columns": f"""
        select n.nspname::text, c.relname::text, a.attnum, a.attname::text,
            format_type(a.atttypid, a.atttypmod), a.attnotnull,
            pg_get_expr(d.adbin, d.adrelid)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where {_USER_NAMESPACES} and a.attnum > 0 and not a.attisdropped
    """,
    "constraints": f"""
        select n.nspname::text, c.relname::text, k.conname::text, pg_get_constraintdef(k.oid)
        from pg_constraint k
        join pg_class c on c.oid = k.conrelid
        join pg_namespace n on n.oid = c.relnamespace
        where {_USER_NAMESPACES}
    """,
    "indexes": f"""
        select pg_get_indexdef(i.indexrelid)
        from pg_index i
        join pg_class c on c.oid = i.indrelid
        join pg_namespace n on n.oid = c.relnamespace
        where {_USER_NAMESPACES}
    """,
    "functions": f"""
        select n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid),
            pg_get_functiondef(p.oid), p.prosecdef, p.proconfig::text, p.provolatile::text,
            p.proparallel::text, p.proacl::text, p.proowner::regrole::text
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where {_USER_NAMESPACES} and p.prokind <> 'a'
    """,
    "triggers": """
        select t.tgrelid::regclass::text, t.tgname::text, pg_get_triggerdef(t.oid),
            t.tgenabled::text
        from pg_trigger t
        where not t.tgisinternal
    """,
    "event_triggers": """
        select e.evtname::text, e.evtevent::text, e.evttags::text, e.evtfoid::regproc::text,
            e.evtenabled::text
        from pg_event_trigger e
    """,
}


def catalog_snapshot(db: Db) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration can create, without oids, each list sorted."""
    snapshot = {name: sorted(db.rows(query), key=repr) for name, query in SNAPSHOT_QUERIES.items()}
    if db.one("select to_regclass('audit.schema_version') is not null"):
        snapshot["schema_version"] = db.rows("select version from audit.schema_version")
    return snapshot


def snapshot_of(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with connect(url) as db:
        return catalog_snapshot(db)


def account_scenario(db: Db) -> list[tuple[Any, ...]]:
    """The README's account scenario; returns the audit rows it must write."""
    db.run("insert into public.account (id, name) values (1, 'Foo Barsworth')")
    db.run("update public.account set name = 'Foo Barsworth Jr.' where id = 1")
    db.run("delete from public.account where id = 1")
    db.run("truncate public.account")
    oid = db.oid("public.account")
    rid = record_id(oid, "1")
    first = {"id": 1, "name": "Foo Barsworth"}
    second = {"id": 1, "name": "Foo Barsworth Jr."}
    where = (oid, "public", "account")
    return [
        ("INSERT", rid, None, *where, first, None),
        ("UPDATE", rid, rid, *where, second, first),
        ("DELETE", None, rid, *where, None, second),
        ("TRUNCATE", None, None, *where, None, None),
    ]


def create_account(db: Db) -> None:
    db.run("create table public.account (id int primary key, name text not null)")


def track_account(operations: Operations) -> None:
    operations.enable_tracking("account")  # type: ignore[attr-defined]


def audited_metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "account",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        info={"audited": True},
    )
    return metadata


#: The sha256 of each released version's frozen SQL (sql/released/<n>.sql), recorded at
#: its release. Installs of these versions exist in users' databases: the upgrade tests
#: start from this text, so it must stay as released. Never update a hash; add one when
#: a version is released (sql/README.md).
RELEASED_SHA256 = {
    1: "3bd9945270de0105a24eb16612cd54f6f44655d481c45dc354f5d9abe544e160",
    2: "0fd968256e7f71bead2c83ea0c05b5bddfe4247e004257bc2346fdddfb954f95",
    3: "a1020acabe6f0e3db72e40b7a8ba5b5fc3f7c824640dbd6dc67fd817cc6f9b1c",
    4: "7def17e990558c80aa2b0eb8e3aff1c63c0a0a9cfb836962dd67f1792f60ec15",
    5: "8d962b4920e196c581c9d040acaa10431dd104495f31e0619d51c87e7f58ccd2",
}

#: The functions of Supabase's auth schema that the audit table's auth columns call.
SUPABASE_AUTH = """
    create schema auth;
    create function auth.uid() returns uuid language sql stable
        as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
    create function auth.role() returns text language sql stable
        as $$ select nullif(current_setting('request.jwt.claim.role', true), '') $$;
"""


def missing_server_extension(title: str, extension: str, library: str) -> str | None:
    """Why tests of a server extension (TimescaleDB, Citus) cannot run here, or None when
    its control file and library are installed for the PostgreSQL the tests start."""
    from hyper_audit_alembic.devtools.throwaway_postgres import find_bin_dir
    from hyper_audit_alembic.errors import PostgresNotFound

    try:
        bin_dir = find_bin_dir()
    except PostgresNotFound as exc:
        return str(exc)
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return f"no pg_config beside {bin_dir / 'postgres'} to locate {title}"
    found = subprocess.run(
        [str(pg_config), "--sharedir", "--pkglibdir"], capture_output=True, text=True
    )
    if found.returncode != 0 or len(found.stdout.splitlines()) != 2:
        return f"{pg_config} --sharedir --pkglibdir failed: {found.stderr or found.stdout}"
    sharedir, pkglibdir = found.stdout.splitlines()
    control = Path(sharedir) / "extension" / f"{extension}.control"
    for needed in (control, Path(pkglibdir) / library):
        if not needed.exists():
            return f"{title} is not installed for the PostgreSQL in {bin_dir}: no {needed}"
    return None
