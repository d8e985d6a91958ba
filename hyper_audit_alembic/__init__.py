"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations."""

from .history import RecordVersion, as_of, history, record_id, table_history

__all__ = ["RecordVersion", "as_of", "history", "record_id", "table_history"]
