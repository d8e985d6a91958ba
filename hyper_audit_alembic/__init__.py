"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations."""
