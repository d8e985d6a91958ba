"""Names into SQL text, quoted by SQLAlchemy's PostgreSQL preparer, never pasted."""

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

