"""A plain ``pip install`` (psycopg2 only, no psycopg 3) takes ``postgresql://`` and ``postgres://``.

SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg 3, which a plain install
lacks; the test environment has it, so this runs in a fresh virtualenv holding only the
package and its dependencies (built once per test session, from this checkout).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import run_online
from conftest import PlainInstall

# A fresh virtualenv holding the wheel, run in subprocesses: slow, so in the pg set.
pytestmark = pytest.mark.pg

MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
"""


@pytest.fixture
def plain_venv(plain_install: PlainInstall) -> Path:
    """The fresh virtualenv holding only the wheel (see conftest.plain_install)."""
    return plain_install.python.parents[1]


def in_venv(
    venv: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd=cwd or venv,
        env={**environment, "PATH": f"{venv / 'bin'}:{environment.get('PATH', '')}", **env},
        timeout=300,
    )


def plain(db_url: str, scheme: str = "postgresql") -> str:
    return db_url.replace("postgresql+psycopg2://", f"{scheme}://")


def test_the_plain_install_has_psycopg2_and_no_psycopg3(plain_venv: Path) -> None:
    done = in_venv(
        plain_venv,
        "python",
        "-c",
        "import importlib.util as u; print(u.find_spec('psycopg'), u.find_spec('psycopg2').name)",
    )
    assert (done.returncode, done.stdout) == (0, "None psycopg2\n"), done.stderr


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_history_takes_a_plain_url(
    plain_venv: Path, db_url: str, engine: sa.Engine, scheme: str
) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("create table account (id int primary key, name text)")

    def script(op: Operations) -> None:
        op.install_audit()  # type: ignore[attr-defined]
        op.enable_tracking("account")  # type: ignore[attr-defined]

    run_online(engine, script)
    with engine.begin() as connection:
        connection.exec_driver_sql("insert into account values (1, 'Foo')")
    url = plain(db_url, scheme)
    for done in (
        in_venv(plain_venv, "hyper-audit-alembic", "history", "--url", url, "account", "1"),
        in_venv(plain_venv, "hyper-audit-alembic", "history", "account", "1", DATABASE_URL=url),
    ):
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.splitlines()[0] == "account (id) = (1): 1 change"


def test_the_template_env_takes_a_plain_url(
    plain_venv: Path, db_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    init = in_venv(plain_venv, "hyper-audit-alembic", "init", "migrations", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    (tmp_path / "models.py").write_text(MODELS)
    ini = tmp_path / "alembic.ini"
    text = ini.read_text()
    assert "sqlalchemy.url = postgresql://user:pass@localhost/dbname" in text
    ini.write_text(
        text.replace(
            "sqlalchemy.url = postgresql://user:pass@localhost/dbname",
            f"sqlalchemy.url = {plain(db_url)}",
        ).replace("target_metadata =", "target_metadata = models:Base.metadata")
    )
    # sqlalchemy.url = postgresql://…
    revision = in_venv(
        plain_venv, "alembic", "revision", "--autogenerate", "-m", "accounts", cwd=tmp_path
    )
    assert revision.returncode == 0, revision.stderr
    # DATABASE_URL=postgres://… (overrides it), online and offline.
    url = plain(db_url, "postgres")
    offline = in_venv(
        plain_venv, "alembic", "upgrade", "head", "--sql", cwd=tmp_path, DATABASE_URL=url
    )
    assert offline.returncode == 0, offline.stderr
    assert "CREATE TABLE account (" in offline.stdout
    assert "INSERT INTO alembic_version (version_num) VALUES (" in offline.stdout
    upgrade = in_venv(plain_venv, "alembic", "upgrade", "head", cwd=tmp_path, DATABASE_URL=url)
    assert upgrade.returncode == 0, upgrade.stderr
    with engine.connect() as connection:
        triggers = connection.exec_driver_sql(
            "select tgname::text from pg_trigger where tgrelid = 'account'::regclass "
            "and not tgisinternal order by 1"
        ).scalars()
        assert list(triggers) == [
            "audit_delete",
            "audit_insert",
            "audit_key_change",
            "audit_truncate",
            "audit_update",
        ]
    check = in_venv(plain_venv, "alembic", "check", cwd=tmp_path, DATABASE_URL=url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected." in check.stdout + check.stderr

    bad = in_venv(plain_venv, "alembic", "check", cwd=tmp_path, DATABASE_URL="not a url")
    assert bad.returncode == 255  # Alembic's exit code for a CommandError
    assert (
        "FAILED: sqlalchemy.url / DATABASE_URL: not a database URL: "
        "expected postgresql://user:password@host:port/dbname"
    ) in (bad.stdout + bad.stderr).splitlines()
    assert "Traceback" not in bad.stdout + bad.stderr


def test_the_demo_takes_a_plain_url(plain_venv: Path, db_url: str) -> None:
    done = in_venv(plain_venv, "hyper-audit-alembic", "demo", "--url", plain(db_url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        "  tables dropped; audit history kept: 8 rows in audit.record_version"
    )


def test_the_plain_install_writes_a_sidecar(plain_venv: Path, tmp_path: Path) -> None:
    done = in_venv(plain_venv, "hyper-audit-alembic", "init", "--sidecar", "audit", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [
        "README",
        "audited.py",
        "env.py",
        "script.py.mako",
        "versions",
    ]
