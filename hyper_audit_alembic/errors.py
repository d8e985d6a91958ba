"""Every exception class hyper_audit_alembic defines, in one place.

Bad input elsewhere is a ``ValueError`` or ``TypeError`` (the history API, URLs) or
Alembic's own ``CommandError`` (autogenerate, the command line); these are the
situations that have a class of their own:

- :class:`AuditOperationError`: an audit operation (``op.install_audit(...)`` & co.) or
  an option of one cannot run as asked. It is an Alembic ``CommandError``, so Alembic's
  command line prints it as one line (``FAILED: ...``) rather than a traceback.
- :class:`IncompleteTrailError` (a ``ValueError``): ``table_as_of()`` asked for a time the
  audit trail cannot rebuild the table at (SQLSTATE HA001 from ``audit.table_as_of``).
- :class:`PostgresNotFound`: the developer tools (demo, tests) found no PostgreSQL
  server binaries to start a throwaway server with.
- :class:`ConflictError`: ``restore()`` or a revert found rows changed since the audit
  rows it works from (changed outside the trail, or later by someone else), and wrote
  nothing; it carries the conflicts.

Why :class:`AuditOperationError` is made on first use: importing alembic runs our
plugin's ``setup()`` (Alembic loads its ``alembic.plugins`` entry points as it is
imported), and setup() imports the operations, which use this class. Were this module
to import alembic at its top, a program whose first import is this module would have
setup() find it half-made. Nothing here imports alembic until the class is asked for,
which happens after alembic is whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime.timemachine.plan import Conflict, WritePlan

__all__ = ["AuditOperationError", "ConflictError", "IncompleteTrailError", "PostgresNotFound"]


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries were found (``initdb``, ``pg_ctl``)."""


class IncompleteTrailError(ValueError):
    """The audit trail cannot rebuild the table at the time asked for (``table_as_of()``,
    or just before a TRUNCATE a revert would undo): no baseline snapshot, a time before the
    trail became complete, or the table not tracked now. The message names the table and
    the fix (a snapshot, or a later time)."""


class ConflictError(RuntimeError):
    """A restore or revert refused: rows changed since the audit rows it works from.

    Nothing was written. ``conflicts`` lists each one (table, key, why, the columns or
    audit rows involved); ``plan`` is what would have been written. The message is one
    line: the first conflict, how many more, and the fix.
    """

    def __init__(self, message: str, conflicts: Sequence[Conflict], plan: WritePlan) -> None:
        super().__init__(message)
        self.conflicts: tuple[Conflict, ...] = tuple(conflicts)
        self.plan = plan


if TYPE_CHECKING:
    from alembic.util import CommandError

    class AuditOperationError(CommandError):
        """An audit operation cannot run as asked."""

else:

    def __getattr__(name: str) -> Any:
        """Make :class:`AuditOperationError` the first time it is asked for."""
        if name != "AuditOperationError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # Importing alembic may run the plugin's setup(), which asks for this class too
        # (and so makes it): make it only if that did not.
        from alembic.util import CommandError

        if "AuditOperationError" not in globals():

            class AuditOperationError(CommandError):
                """An audit operation cannot run as asked."""

            AuditOperationError.__qualname__ = "AuditOperationError"
            globals()["AuditOperationError"] = AuditOperationError
        return globals()["AuditOperationError"]
