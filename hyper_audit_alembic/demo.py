"""The demo: the user's two scenarios, end to end, as a new user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

from .cli import init_environment
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
       record::text as new, old_record::text as old
from audit.record_version order by id
"""


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
        raise RuntimeError(f"alembic {' '.join(args)} failed:\n{output}")
    return output


def _short(value: str | None, width: int = 46) -> str:
    if value is None:
        return ""
    return value if len(value) <= width else value[: width - 1] + "…"


def print_history(connection: sa.Connection) -> int:
    rows = connection.exec_driver_sql(HISTORY).all()
    header = ("id", "op", "table", "record", "record (new)", "old_record")
    table = [header] + [
        (str(r.id), r.op, r.table_name, r.record or "", _short(r.new), _short(r.old)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  " + " | ".join(cells).rstrip())
        if n == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    return len(rows)


def run_demo(url: str | None = None, keep: bool = False) -> int:
    with ExitStack() as stack:
        if url is None:
            _say("Starting a throwaway PostgreSQL server")
            server = stack.enter_context(ThrowawayPostgres())
            url = server.url()
            print(f"  {url}")
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

        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        _say("Scenario 1, account: insert, update, delete, truncate")
        with engine.begin() as connection:
            for statement in ACCOUNT_SCENARIO:
                print(f"  {statement}")
                connection.exec_driver_sql(statement)
        _say("Scenario 2, OAuth tokens: the same customer's tokens upserted twice")
        for attempt in (1, 2):
            with engine.begin() as connection:
                connection.exec_driver_sql(OAUTH_UPSERT)
            print(f"  upsert {attempt} committed")
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


def _record_ids(connection: sa.Connection) -> dict[str, int]:
    """How many audit rows each record id has, to show one history per record."""
    found = connection.exec_driver_sql(
        "select table_name || ':' || left(coalesce(record_id, old_record_id)::text, 8), count(*) "
        "from audit.record_version where op <> 'TRUNCATE' group by 1 order by 1"
    ).all()
    return {key: count for key, count in found}
