"""The audit schema's compliance functions (version 5), checked before they are called.

A database whose audit schema is older has none of them: the caller gets one line that
says so and how to upgrade, rather than the driver's "function does not exist".
"""

from __future__ import annotations

from typing import TypeAlias

import sqlalchemy as sa
from sqlalchemy.orm import Session

#: What the compliance functions take: a SQLAlchemy connection or an ORM session.
Bind: TypeAlias = sa.Connection | Session

_EXISTS = sa.text("select pg_catalog.to_regprocedure(:signature) is not null")


def require_function(bind: Bind, signature: str, what: str) -> None:
    """Refuse in one line when ``signature`` (e.g. ``audit.seal()``) is not there."""
    if not bind.execute(_EXISTS, {"signature": signature}).scalar():
        raise ValueError(
            f"{what}: this database has no {signature}: its audit trail is older than "
            "audit schema version 5 (or not installed); upgrade it (op.upgrade_audit() in "
            "a migration)"
        )


def as_bytes(value: object) -> bytes:
    """A ``bytea`` as the driver returns it (bytes, memoryview) as bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected a bytea value, got {type(value).__name__}")
