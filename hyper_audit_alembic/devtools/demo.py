"""The demo: the user's two scenarios, end to end, as a new user would run them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import URL

from ..runtime.context import audit_context
from ..templates import init_environment
from ..urls import connect, postgresql_url, url_text, where
from .throwaway_postgres import ThrowawayPostgres

MODELS = '''\
"""The sample project's models: an account table and OAuth token tables, audited."""

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Audited:
    """Mixin: every model that inherits it is tracked by the audit trail."""

    __audited__ = True


class Account(Audited, Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)


class AccessToken(Audited, Base):
    __tablename__ = "access_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(unique=True)
    token: Mapped[str]
    expires_at: Mapped[datetime] = mapped_column(server_default=func.now())


class RefreshToken(Audited, Base):
    __tablename__ = "refresh_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    access_token_id: Mapped[int] = mapped_column(ForeignKey("access_token.id"), unique=True)
    token: Mapped[str]
    expires_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Note(Base):
    """Not flagged: changes here are not audited."""

    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]
'''

ACCOUNT_SCENARIO = [
    "insert into public.account (id, name) values (1, 'Foo Barsworth')",
    "update public.account set name = 'Foo Barsworht III' where id = 1",
    "delete from public.account where id = 1",
    "truncate table public.account",
]

# One transaction upserts a customer's access token, then its refresh token.
OAUTH_UPSERT = """
with ac as (
    insert into access_token (customer_id, token, expires_at)
    values (42, gen_random_uuid(), now() + interval '1 day')
    on conflict (customer_id)
    do update set token = gen_random_uuid(), expires_at = now() + interval '1 day'
    returning id, expires_at
)
insert into refresh_token (access_token_id, token, expires_at)
values ((select id from ac), gen_random_uuid(), (select expires_at from ac))
on conflict (access_token_id)
do update set token = gen_random_uuid(), expires_at = (select expires_at from ac)
"""

HISTORY = """
select id, op, table_name, left(coalesce(record_id, old_record_id)::text, 8) as record,
       record::text as new, old_record::text as old, actor, context::text as context
from audit.record_version order by id
"""


# What a database holds of its own: schemas, relations, functions, types and extensions
# (not PostgreSQL's, not an extension's members, not a table's owned sequence), each with
# the statement that drops it, identifiers quoted by format('%I') / regprocedure.
INVENTORY = r"""
with user_schema as (
    select n.oid, n.nspname from pg_catalog.pg_namespace n
    where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_%'
), member as (
    select d.classid, d.objid from pg_catalog.pg_depend d where d.deptype in ('e', 'a', 'i')
)
select kind, name, drop_statement from (
    select 1 as step, 'schema' as kind, format('%I', s.nspname) as name,
        format('drop schema if exists %I cascade', s.nspname) as drop_statement
    from user_schema s
    where s.nspname <> 'public' and not exists (
        select from member m
        where m.classid = 'pg_catalog.pg_namespace'::regclass and m.objid = s.oid
    )
    union all
    select 2, case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
        when 'S' then 'sequence' when 'f' then 'foreign table' else 'table' end,
        format('%I.%I', s.nspname, c.relname),
        format('drop %s if exists %I.%I cascade', case c.relkind when 'v' then 'view'
            when 'm' then 'materialized view' when 'S' then 'sequence'
            when 'f' then 'foreign table' else 'table' end, s.nspname, c.relname)
    from pg_catalog.pg_class c join user_schema s on s.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and not exists (
        select from member m where m.classid = 'pg_catalog.pg_class'::regclass and m.objid = c.oid
    )
    union all
    select 3, 'function', p.oid::regprocedure::text,
        format('drop routine if exists %s cascade', p.oid::regprocedure)
    from pg_catalog.pg_proc p join user_schema s on s.oid = p.pronamespace
    where not exists (
        select from member m where m.classid = 'pg_catalog.pg_proc'::regclass and m.objid = p.oid
    )
    union all
    select 4, 'type', format('%I.%I', s.nspname, t.typname),
        format('drop type if exists %I.%I cascade', s.nspname, t.typname)
    from pg_catalog.pg_type t join user_schema s on s.oid = t.typnamespace
    where t.typtype in ('e', 'd', 'r', 'm', 'b')
        and t.typelem = 0 and t.typrelid = 0
        and not exists (
            select from member m
            where m.classid = 'pg_catalog.pg_type'::regclass and m.objid = t.oid
        )
    union all
    select 5, 'extension', format('%I', e.extname),
        format('drop extension if exists %I cascade', e.extname)
    from pg_catalog.pg_extension e where e.extname <> 'plpgsql'
) found
order by step, name
"""

_MAY_CREATE_DATABASES = """
select rolcreatedb or rolsuper from pg_catalog.pg_roles where rolname = current_user
"""


def inventory(connection: sa.Connection) -> list[tuple[str, str, str]]:
    """(kind, name, drop statement) of everything the database holds of its own."""
    return [(kind, name, drop) for kind, name, drop in connection.execute(sa.text(INVENTORY))]


def describe_inventory(found: list[tuple[str, str, str]]) -> str:
    """``schemas a, b; tables public.x; extensions y``."""
    by_kind: dict[str, list[str]] = {}
    for kind, name, _ in found:
        by_kind.setdefault(kind, []).append(name)
    return "; ".join(f"{kind}s {', '.join(names)}" for kind, names in by_kind.items())


def _outermost(found: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Without what a listed schema holds (dropping the schema removes it)."""
    schemas = {name for kind, name, _ in found if kind == "schema"}
    return [
        item
        for item in found
        if item[0] == "schema" or not any(item[1].startswith(f"{s}.") for s in schemas)
    ]


@contextmanager
def demo_database(given: URL, keep: bool) -> Iterator[URL]:
    """A database on ``given``'s server for the demo to use and, unless ``keep``, remove.

    A scratch database with a fresh name when the role may create databases; otherwise
    ``given``'s database itself, only if it is empty (so nothing of the user's can be
    changed), cleared of everything the demo made afterwards.
    """
    admin = sa.create_engine(given, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with connect(admin, given) as connection:
            may_create = bool(connection.scalar(sa.text(_MAY_CREATE_DATABASES)))
            if may_create:
                name = f"hyper_audit_demo_{secrets.token_hex(4)}"
                quoted = connection.dialect.identifier_preparer.quote(name)
                connection.exec_driver_sql(f"create database {quoted} template template0")
            else:
                before = inventory(connection)
        if may_create:
            yield from _scratch_database(admin, given, name, quoted, keep)
        else:
            yield from _empty_database(admin, given, before, keep)
    finally:
        admin.dispose()


def _scratch_database(
    admin: sa.Engine, given: URL, name: str, quoted: str, keep: bool
) -> Iterator[URL]:
    print(f"\n  (working in a scratch database {name} on {where(given).rsplit('/', 1)[0]})")
    try:
        yield given.set(database=name)
    finally:
        if keep:
            print(
                f"\nThe demo's database {name} stays on {where(given).rsplit('/', 1)[0]}; "
                f"drop it with: dropdb -h {given.host or 'localhost'} -p {given.port or 5432}"
                f" -U {given.username or '$USER'} {name}"
            )
        else:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"drop database if exists {quoted} with (force)")


def _empty_database(
    admin: sa.Engine, given: URL, before: list[tuple[str, str, str]], keep: bool
) -> Iterator[URL]:
    if before:
        raise CommandError(
            f"the demo needs a database of its own: role {given.username or '(default)'} may "
            f"not create one (no CREATEDB), and {where(given)} is not empty: it holds "
            f"{describe_inventory(before)}. Pass the URL of an empty database "
            f"(createdb hyper_audit_demo), or of a role that may create databases."
        )
    print(f"\n  (working in the empty database {where(given)}, the role may not create one)")
    try:
        yield given
    finally:
        with admin.connect() as connection:
            made = _outermost([item for item in inventory(connection) if item not in before])
            if keep and made:
                print(
                    f"\nThe demo's objects stay in {where(given)}: {describe_inventory(made)}; "
                    f"remove them with: {'; '.join(drop for _, _, drop in made)}"
                )
            else:
                for _, _, drop in made:
                    connection.exec_driver_sql(drop)


def _say(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _alembic(project: Path, url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        lines = output.splitlines() or ["(no output)"]
        raise CommandError(
            f"alembic {' '.join(args)} failed in the demo's project {project}: {lines[-1]}"
        ) from RuntimeError(output)
    return output


def _short(value: str | None, width: int = 46) -> str:
    if value is None:
        return ""
    return value if len(value) <= width else value[: width - 1] + "…"


def print_history(connection: sa.Connection) -> int:
    rows = connection.exec_driver_sql(HISTORY).all()
    header = ("id", "op", "table", "record", "record (new)", "old_record", "actor", "context")
    table = [header] + [
        (
            str(r.id),
            r.op,
            r.table_name,
            r.record or "",
            _short(r.new, 40),
            _short(r.old, 40),
            r.actor or "",
            r.context or "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  " + " | ".join(cells).rstrip())
        if n == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    return len(rows)


def run_demo(url: str | None = None, keep: bool = False) -> int:
    """The demo, on a throwaway server, or with ``url`` in a database of its own there.

    It never changes what it did not create: with ``url`` it works in a scratch database
    it creates (or, for a role without CREATEDB, in ``url``'s database only if it is
    empty) and removes everything afterwards unless ``keep``.
    """
    with ExitStack() as stack:
        if url is None:
            _say("Starting a throwaway PostgreSQL server")
            server = stack.enter_context(ThrowawayPostgres())
            url = server.url()
            print(f"  {url}")
        else:
            url = url_text(stack.enter_context(demo_database(postgresql_url(url), keep)))
        project = Path(tempfile.mkdtemp(prefix="hyper_audit_demo_"))
        if not keep:
            stack.callback(lambda: __import__("shutil").rmtree(project, ignore_errors=True))

        _say(f"Creating a sample project from the template in {project}")
        (project / "demo_models.py").write_text(MODELS)
        cwd = os.getcwd()
        os.chdir(project)
        try:
            init_environment("migrations")
        finally:
            os.chdir(cwd)
        ini = project / "alembic.ini"
        ini.write_text(
            ini.read_text().replace(
                "target_metadata =", "target_metadata = demo_models:Base.metadata"
            )
        )
        print("  models: Account, AccessToken, RefreshToken (all __audited__ = True), Note (not)")

        _say("alembic revision --autogenerate -m 'accounts and tokens'")
        _alembic(project, url, "revision", "--autogenerate", "-m", "accounts and tokens")
        migration = next((project / "migrations" / "versions").glob("*.py"))
        print(migration.read_text())

        _say("alembic upgrade head")
        _alembic(project, url, "upgrade", "head")
        print("  done")

        engine = sa.create_engine(url, poolclass=sa.NullPool)
        stack.callback(engine.dispose)
        _say("Scenario 1, account: insert, update, delete, truncate")
        print('  in audit_context(connection, actor="user:42", request_id="req-1")')
        with (
            engine.begin() as connection,
            audit_context(connection, actor="user:42", request_id="req-1"),
        ):
            for statement in ACCOUNT_SCENARIO:
                print(f"  {statement}")
                connection.exec_driver_sql(statement)
        _say("Scenario 2, OAuth tokens: the same customer's tokens upserted twice")
        for attempt in (1, 2):
            request = f"req-{attempt + 1}"
            with (
                engine.begin() as connection,
                audit_context(connection, actor="user:42", request_id=request),
            ):
                connection.exec_driver_sql(OAUTH_UPSERT)
            print(f'  upsert {attempt} committed, in audit_context(request_id="{request}")')
        with engine.connect() as connection:
            live = connection.exec_driver_sql(
                "select (select count(*) from access_token), (select count(*) from refresh_token)"
            ).one()
            print(f"  live rows: access_token {live[0]}, refresh_token {live[1]}")

            _say("audit.record_version")
            rows = print_history(connection)
            superseded = connection.exec_driver_sql(
                "select count(*) from audit.record_version "
                "where table_name = 'access_token' and op = 'UPDATE'"
            ).scalar()
            print(f"  {rows} audit rows; superseded access tokens kept: {superseded}")
            print(f"  record ids: {json.dumps(_record_ids(connection))}")

        _print_read_side(engine)

        _say("alembic check")
        checked = _alembic(project, url, "check").splitlines()
        print("  " + next((line for line in checked if "No new upgrade" in line), checked[-1]))

        _say("alembic downgrade base")
        _alembic(project, url, "downgrade", "base")
        with engine.connect() as connection:
            kept = connection.exec_driver_sql("select count(*) from audit.record_version").scalar()
        print(f"  tables dropped; audit history kept: {kept} rows in audit.record_version")
        if keep:
            print(f"\nThe sample project stays in {project}")
    return 0


def _print_read_side(engine: sa.Engine) -> None:
    """The history API: one record's history, and one request's changes."""
    from sqlalchemy.orm import Session

    from ..runtime.history import context_history, history, render_versions

    with Session(engine) as session:
        _say('history(session, "account", 1): who changed it, in which request')
        versions = history(session, "account", 1)
        for line in render_versions(versions, ("id", "name")).splitlines():
            print(f"  {line}")
        _say('context_history(session, {"request_id": "req-3"}): one request\'s changes')
        for version in context_history(session, {"request_id": "req-3"}):
            print(
                f"  {version.op} {version.table_name} by {version.actor}"
                f" in transaction {version.transaction_id}"
            )


def _record_ids(connection: sa.Connection) -> dict[str, int]:
    """How many audit rows each record id has, to show one history per record."""
    found = connection.exec_driver_sql(
        "select table_name || ':' || left(coalesce(record_id, old_record_id)::text, 8), count(*) "
        "from audit.record_version where op <> 'TRUNCATE' group by 1 order by 1"
    ).all()
    return {key: count for key, count in found}
