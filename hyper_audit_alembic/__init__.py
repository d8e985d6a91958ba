"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations."""

from .context import audit_context
from .history import (
    RecordVersion,
    as_of,
    context_history,
    history,
    record_id,
    table_history,
    transaction_history,
)

__all__ = [
    "RecordVersion",
    "as_of",
    "audit_context",
    "context_history",
    "history",
    "record_id",
    "table_history",
    "transaction_history",
]
