"""The migration environment template and ``hyper-audit-alembic init``; online and offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic_project import TEMPLATE, Project

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

# `alembic init` and the console script run in fresh interpreters: slow, so in the pg set.
pytestmark = pytest.mark.pg

TEMPLATE_FILES = ["README", "env.py", "script.py.mako"]

MODELS = '''
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class OddName(Base):
    """A name that needs quoting, in a schema off the search path."""

    __tablename__ = "Odd Name"
    __table_args__ = {"schema": "ledger"}
    __audited__ = True

    key: Mapped[str] = mapped_column(String(10), primary_key=True)
'''


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)


def _assert_environment(root: Path) -> None:
    ini = (root / "alembic.ini").read_text()
    assert "script_location = %(here)s/migrations" in ini
    assert "target_metadata =" in ini
    for name in TEMPLATE_FILES:
        assert (root / "migrations" / name).read_text() == (TEMPLATE / name).read_text(), name
    assert (root / "migrations" / "versions").is_dir()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "alembic", "init", "-t", str(TEMPLATE), "migrations"],
        [sys.executable, "-m", "hyper_audit_alembic", "init", "migrations"],
        [str(Path(sys.executable).parent / "hyper-audit-alembic"), "init", "migrations"],
    ],
    ids=["alembic-init-t", "python-m", "console-script"],
)
def test_init_writes_alembic_ini_and_the_environment(tmp_path: Path, command: list[str]) -> None:
    if not Path(command[0]).exists():
        found = shutil.which("hyper-audit-alembic")
        assert found, "the hyper-audit-alembic console script is not installed"
        command = [found, *command[1:]]
    done = _run(*command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _assert_environment(tmp_path)
    if "hyper_audit_alembic" in command:
        # A second init into the same place: a one-line error, no traceback.
        again = _run(*command, cwd=tmp_path)
        assert again.returncode == 1
        assert again.stderr.startswith("error: Directory ")
        assert "already exists and is not empty" in again.stderr
        assert "Traceback" not in again.stderr


def test_init_with_another_config_file_name(tmp_path: Path) -> None:
    from hyper_audit_alembic.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["init", "db/migrations", "-c", "db/alembic.ini"]) == 0
    finally:
        os.chdir(cwd)
    assert (tmp_path / "db" / "alembic.ini").exists()
    assert (tmp_path / "db" / "migrations" / "env.py").exists()


# -- online and offline give the same database -------------------------------------------

# Everything the audit trail puts into a database, in a comparable form.
FINGERPRINT = r"""
select 'relation', n.nspname || '.' || c.relname || ' ' || c.relkind::text
       || coalesce(' ' || array_to_string(c.relacl, ','), '')
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('audit', 'public', 'ledger')
union all
select 'function', p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
       || coalesce(' ' || array_to_string(p.proacl, ','), '')
from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'audit'
union all
select 'trigger', t.tgrelid::regclass::text || ' ' || t.tgname || ' '
       || t.tgfoid::regproc::text || ' ' || encode(t.tgargs, 'escape') || ' ' || t.tgenabled::text
from pg_trigger t where not t.tgisinternal
union all
select 'event trigger', e.evtname || ' ' || e.evtfoid::regproc::text || ' ' || e.evtevent
from pg_event_trigger e
union all
select 'type', t.typname || ' ' || coalesce((
    select string_agg(enumlabel::text, ',' order by enumsortorder)
    from pg_enum where enumtypid = t.oid), '')
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where n.nspname = 'audit' and t.typtype = 'e'
union all
select 'schema', nspname || coalesce(' ' || array_to_string(nspacl, ','), '')
from pg_namespace where nspname in ('audit', 'ledger')
union all
select 'extension', extname from pg_extension
order by 1, 2
"""
OPTIONAL = {
    "audit.schema_version": "select 'schema_version', version::text from audit.schema_version",
    "public.alembic_version": "select 'alembic_version', version_num from alembic_version",
}


@pytest.fixture
def second_db_url(db_url: str, pg_server: ThrowawayPostgres) -> Iterator[str]:
    name = sa.make_url(db_url).database + "_offline"
    pg_server.psql(pg_server.maintenance_dbname, "-c", f'create database "{name}"')
    yield pg_server.url(name)
    pg_server.psql(pg_server.maintenance_dbname, "-c", f'drop database "{name}" with (force)')


def fingerprint(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            found = [(kind, what) for kind, what in connection.exec_driver_sql(FINGERPRINT)]
            for table, query in OPTIONAL.items():
                if connection.exec_driver_sql(f"select to_regclass('{table}')").scalar():
                    found += [(kind, what) for kind, what in connection.exec_driver_sql(query)]
            return found
    finally:
        engine.dispose()


def test_environment_works_online_and_offline_alike(
    tmp_path: Path, db_url: str, second_db_url: str, pg_server: ThrowawayPostgres
) -> None:
    for url in (db_url, second_db_url):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("create schema ledger")
        engine.dispose()
    project = Project.create(tmp_path / "project", db_url, MODELS)
    project.set_include_schemas(True)
    migration = project.revision("audit")
    assert "op.enable_tracking('Odd Name', schema='ledger')" in migration

    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    online = fingerprint(db_url)
    sql = project.upgrade(sql=True)
    assert "%%" not in sql
    applied = pg_server.psql(sa.make_url(second_db_url).database, input=sql)
    assert applied.returncode == 0, applied.stderr
    offline = fingerprint(second_db_url)
    assert offline == online
    triggers = [what for kind, what in online if kind == "trigger"]
    # Statement-level audit triggers plus the key-change row trigger (see install.sql).
    assert triggers == [
        f"{table} {name} audit.{function} {args} O"
        for table, key in (("account", "id"), ('ledger."Odd Name"', "key"))
        for name, function, args in (
            ("audit_delete", "record_row_change", key + "\\000"),
            ("audit_insert", "record_row_change", key + "\\000"),
            ("audit_key_change", "record_key_change", key + "\\000"),
            ("audit_truncate", "record_truncate", ""),
            ("audit_update", "record_row_change", key + "\\000"),
        )
    ]

    # The offline database records changes like the online one.
    for url in (db_url, second_db_url):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("insert into account (id, name) values (1, 'a')")
            connection.exec_driver_sql("""insert into ledger."Odd Name" (key) values ('k')""")
            assert connection.exec_driver_sql(
                "select op::text, table_schema, table_name from audit.record_version order by id"
            ).all() == [("INSERT", "public", "account"), ("INSERT", "ledger", "Odd Name")]
        engine.dispose()

    # And back down, offline against online.
    project.downgrade("base")
    down_sql = project.downgrade("head:base", sql=True)
    applied = pg_server.psql(sa.make_url(second_db_url).database, input=down_sql)
    assert applied.returncode == 0, applied.stderr
    # Alembic before 1.20 drops alembic_version at the end of an offline downgrade to base
    # (online it stays, empty): Alembic's own difference, not the audit's.
    assert without_alembic_version(fingerprint(second_db_url)) == without_alembic_version(
        fingerprint(db_url)
    )


def without_alembic_version(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(kind, what) for kind, what in found if "alembic_version" not in what]


def test_database_url_environment_variable_overrides_the_ini(tmp_path: Path, db_url: str) -> None:
    models = MODELS.split("class OddName")[0]
    project = Project.create(tmp_path, "postgresql+psycopg2://nobody@127.0.0.1:1/nothing", models)
    project.database_url = db_url
    assert "op.enable_tracking('account')" in project.revision()
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
