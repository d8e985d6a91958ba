"""Names and text into SQL, quoted by SQLAlchemy's PostgreSQL dialect, never pasted.

The one place that turns a Python string into SQL text: the migration side (the
operations' templates, via :mod:`hyper_audit_alembic.sql`) and the runtime side (the
history API's row type) both quote through it. The SQL files and their placeholders are
:mod:`hyper_audit_alembic.sql`'s job.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import String
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


@cache
def _dialect() -> Dialect:
    # "named" paramstyle: literals are rendered without doubling '%'.
    return postgresql.dialect(paramstyle="named")  # type: ignore[no-untyped-call]


def quote_identifier(name: str) -> str:
    """``name`` as a PostgreSQL identifier, quoted where it needs quoting."""
    return _dialect().identifier_preparer.quote(name)


def qualified_name(table_name: str, schema: str | None = None) -> str:
    """``schema.table`` (or ``table``) as SQL identifiers."""
    table = quote_identifier(table_name)
    return f"{quote_identifier(schema)}.{table}" if schema else table


def string_literal(value: str) -> str:
    """``value`` as a SQL string literal."""
    render = String().literal_processor(_dialect())  # type: ignore[no-untyped-call]
    assert render is not None
    return str(render(value))
