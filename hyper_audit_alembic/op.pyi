# Alembic's op directives plus the ones the hyper_audit plugin registers.
from alembic.op import *  # noqa: F403

def install_audit() -> None:
    """Install the audit schema: audit.record_version, its functions and triggers."""

def uninstall_audit(*, keep_history: bool = False, drop_history: bool = False) -> None:
    """Stop all tracking and remove the audit functions; history only by explicit choice."""

def enable_tracking(table_name: str, *, schema: str | None = None) -> None:
    """Record every INSERT, UPDATE, DELETE and TRUNCATE of a table. Idempotent."""

def disable_tracking(table_name: str, *, schema: str | None = None) -> None:
    """Stop recording changes of a table; its history stays. Idempotent."""
