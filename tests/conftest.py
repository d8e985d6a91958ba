"""One throwaway PostgreSQL server per test session; a fresh database per test.

The server is ours (it must run as an unprivileged user when the tests run as root);
pytest-postgresql's janitor gives each test its own database, cloned from a template.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pytest_postgresql import factories

from hyper_audit_alembic.throwaway_postgres import ThrowawayPostgres


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
