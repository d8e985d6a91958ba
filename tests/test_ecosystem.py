"""Drivers (psycopg2, psycopg 3, asyncpg through env.py's async branch) and mypy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic_project import ACCOUNT_MODELS, Project, migration_body

import hyper_audit_alembic

MODELS = ACCOUNT_MODELS


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg", "asyncpg"])
def test_driver_runs_autogenerate_upgrade_check_and_downgrade(
    tmp_path: Path, db_url: str, driver: str
) -> None:
    url = sa.make_url(db_url).set(drivername=f"postgresql+{driver}")
    project = Project.create(tmp_path, url.render_as_string(hide_password=False), MODELS)
    text = project.revision("accounts")
    assert migration_body(text, "upgrade")[0] == "op.install_audit()"
    assert migration_body(text, "upgrade")[-1] == "op.enable_tracking('account')"
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("insert into account (id, name) values (1, 'a')")
            connection.exec_driver_sql("update account set name = 'b'")
            assert connection.exec_driver_sql(
                "select op::text, record->>'name', old_record->>'name' "
                "from audit.record_version order by id"
            ).all() == [("INSERT", "a", None), ("UPDATE", "b", "a")]
        project.downgrade("base")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("select to_regclass('account')").scalar() is None
            assert (
                connection.exec_driver_sql("select count(*) from audit.record_version").scalar()
                == 2
            )
    finally:
        engine.dispose()


def test_async_driver_goes_through_the_async_branch(tmp_path: Path, db_url: str) -> None:
    """env.py runs an asyncpg URL on an async engine (a sync engine would refuse it)."""
    url = sa.make_url(db_url).set(drivername="postgresql+asyncpg")
    assert url.get_dialect().is_async
    project = Project.create(tmp_path, url.render_as_string(hide_password=False), MODELS)
    project.edit_env(
        "        asyncio.run(run_async_migrations())\n",
        "        print('async branch')\n        asyncio.run(run_async_migrations())\n",
    )
    from contextlib import redirect_stdout
    from io import StringIO

    printed = StringIO()
    with redirect_stdout(printed):
        project.revision()
    assert printed.getvalue().splitlines()[0] == "async branch"


# -- mypy --------------------------------------------------------------------------------

HAND_WRITTEN = """

def more() -> None:
    op.install_audit()
    op.enable_tracking("account", schema="public")
    op.disable_tracking("account")
    op.uninstall_audit(keep_history=True)
    op.uninstall_audit(drop_history=True)
    op.execute("select 1")
    op.create_index(op.f("ix_account_name"), "account", ["name"])
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("email", sa.String()))
    op.get_bind().exec_driver_sql("select 1")
"""

WRONG = """

def wrong() -> None:
    op.enable_tracking(42)
    op.uninstall_audit(True)
    op.no_such_directive()
"""


def _mypy(directory: Path, *files: str) -> subprocess.CompletedProcess[str]:
    # A checkout installed with `pip install -e .` is found through an import hook that
    # mypy cannot follow; an ordinary install sits in site-packages. MYPYPATH set to the
    # directory holding the package is what mypy sees in the ordinary case.
    package_parent = str(Path(hyper_audit_alembic.__file__).parent.parent)
    env = {**os.environ, "MYPYPATH": package_parent}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--cache-dir",
            str(directory / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            *files,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
    )


def test_mypy_knows_the_audit_directives_in_a_generated_migration(
    tmp_path: Path, db_url: str
) -> None:
    project = Project.create(tmp_path, db_url, MODELS)
    text = project.revision("accounts")
    for line in (
        "op.install_audit()",
        "op.enable_tracking('account')",
        "op.disable_tracking('account')",
        "op.uninstall_audit(keep_history=True)",
    ):
        assert line in text
    migration = project.last_migration
    good = tmp_path / "good_migration.py"
    good.write_text(text + HAND_WRITTEN)
    bad = tmp_path / "bad_migration.py"
    bad.write_text(text + WRONG)

    # One mypy run (a cold one costs seconds): no error but the three wrong calls, which
    # show that the stub really is in use.
    checked = _mypy(tmp_path, str(migration.relative_to(tmp_path)), good.name, bad.name)
    errors = [
        line.split(":", 1)[0] + ": " + line.split(": error: ")[1]
        for line in checked.stdout.splitlines()
        if ": error: " in line
    ]
    assert errors == [
        'bad_migration.py: Argument 1 to "enable_tracking" has incompatible type "int"; '
        'expected "str"  [arg-type]',
        'bad_migration.py: Too many positional arguments for "uninstall_audit"  [call-arg]',
        'bad_migration.py: Module has no attribute "no_such_directive"  [attr-defined]',
    ], checked.stdout + checked.stderr
