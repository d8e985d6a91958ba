"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations."""

# Alembic first, whichever of our modules is imported: importing alembic runs its plugin
# entry points, and so our plugin's setup(), which imports our operation modules. Were one
# of those the module being imported (half-loaded), setup() would fail on it.
import alembic  # noqa: F401  # isort: skip

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
