"""One throwaway PostgreSQL server per test session; a fresh database per test.

The server is ours (it must run as an unprivileged user when the tests run as root);
pytest-postgresql's janitor gives each test its own database, cloned from a template.
A second server, preloading TimescaleDB, serves the TimescaleDB tests (skipped where it
is not installed).

Every test that uses one of the server fixtures is marked ``pg`` here; tests that start a
server or a fresh interpreter themselves carry the mark in their module. ``pytest -m
"not pg"`` runs the rest (rendering, golden text, option checks, parsing) in seconds,
with no PostgreSQL binaries at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from pytest_postgresql import factories
from timescale_helpers import fresh_database, timescale_server

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

#: The fixtures that start a PostgreSQL server (or hand out a database on one); a test
#: whose fixture closure holds any of them needs a server, and is marked ``pg``.
SERVER_FIXTURES = frozenset(
    {
        "pg_server",
        "postgresql_noproc",
        "postgresql",
        "ts_server",
        "ts_apache_server",
        "logical_server",  # test_trust.py: a server with wal_level=logical
    }
)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pg)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as server:
        yield server


postgresql_noproc = factories.postgresql_noproc(depends_on="pg_server")
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def db_url(postgresql, pg_server: ThrowawayPostgres) -> str:  # type: ignore[no-untyped-def]
    """A URL (psycopg2) for a fresh, empty database of the test's own."""
    return pg_server.url(postgresql.info.dbname)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def ts_server() -> Iterator[ThrowawayPostgres]:
    """A server that preloads timescaledb; skips the test where TimescaleDB is missing."""
    yield from timescale_server()


@pytest.fixture(scope="session")
def ts_apache_server() -> Iterator[ThrowawayPostgres]:
    """The same with only the Apache-licensed features, as some managed clouds offer.

    The license is a server setting: a database or role setting does not change it.
    """
    yield from timescale_server(**{"timescaledb.license": "apache"})


@pytest.fixture
def ts_url(ts_server: ThrowawayPostgres) -> Iterator[str]:
    """A fresh database on the TimescaleDB server, without the extension created yet."""
    with fresh_database(ts_server) as url:
        yield url


@pytest.fixture
def ts_engine(ts_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(ts_url)
    yield engine
    engine.dispose()


REPO = Path(__file__).resolve().parents[1]


def run_quietly(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv, capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


@dataclass
class PlainInstall:
    python: Path  #: the fresh virtualenv's python
    wheel: Path  #: the wheel built from the checkout
    build_output: str  #: what the build printed (pip -v)


@pytest.fixture(scope="session")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> PlainInstall:
    """A fresh virtualenv holding the package's wheel, installed plainly (no extras)."""
    root = tmp_path_factory.mktemp("plain_install")
    venv = root / "venv"
    made = run_quietly([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # From a copy: setuptools builds in the source tree and packs what an earlier build
    # left in its build/ folder.
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".venv", ".tox"
        ),
    )
    wheels = root / "wheels"
    built = run_quietly(
        [str(python), "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(wheels), str(source)],
        cwd=root,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("hyper_audit_alembic-*.whl")
    installed = run_quietly([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=root)
    assert installed.returncode == 0, installed.stderr
    return PlainInstall(python, wheel, built.stdout + built.stderr)


@pytest.fixture
def plain_python(plain_install: PlainInstall) -> Path:
    return plain_install.python
