"""The audit operations: one small class per ``op.`` directive.

Each op only emits SQL. Reading the database happens at autogenerate time, never
here, so every op works the same online and in offline (``--sql``) mode.
"""

from __future__ import annotations

from collections.abc import Iterable

from alembic.operations import MigrateOperation, Operations
from alembic.util import CommandError

from . import sql
from .quoting import qualified_name_literal


class AuditOperationError(CommandError):
    """An audit operation cannot run as asked."""


def _emit(operations: Operations, statements: Iterable[str]) -> None:
    """Run statements online, or write them verbatim in offline mode.

    Verbatim keeps '%' and ':' in names intact whatever paramstyle env.py chose.
    """
    context = operations.get_context()
    if context.dialect.name != "postgresql":
        raise AuditOperationError(
            f"hyper_audit: the audit trail needs PostgreSQL, but this migration runs on "
            f"{context.dialect.name!r}. Run it against PostgreSQL, or remove the audit "
            f"operations from it."
        )
    if context.as_sql:
        for statement in statements:
            context.impl.static_output(statement + context.impl.command_terminator)
    else:
        connection = operations.get_bind()
        for statement in statements:
            connection.exec_driver_sql(statement)


@Operations.register_operation("install_audit")
class InstallAuditOp(MigrateOperation):
    """Install (or complete) the audit schema."""

    @classmethod
    def install_audit(cls, operations: Operations) -> None:
        """Install the audit schema: ``audit.record_version``, its functions and triggers.

        Safe over an existing audit schema: recorded history is kept.
        """
        operations.invoke(cls())

    def reverse(self) -> UninstallAuditOp:
        return UninstallAuditOp(keep_history=True)

    def to_diff_tuple(self) -> tuple[str]:
        return ("install_audit",)


@Operations.register_operation("uninstall_audit")
class UninstallAuditOp(MigrateOperation):
    """Remove the audit schema; destroying history is an explicit choice."""

    def __init__(self, keep_history: bool = False, drop_history: bool = False) -> None:
        if keep_history and drop_history:
            raise AuditOperationError(
                "uninstall_audit: choose keep_history=True or drop_history=True, not both"
            )
        self.keep_history = keep_history
        self.drop_history = drop_history

    @classmethod
    def uninstall_audit(
        cls, operations: Operations, *, keep_history: bool = False, drop_history: bool = False
    ) -> None:
        """Stop all tracking and remove the audit functions.

        With ``keep_history=True`` the audit schema and ``audit.record_version`` stay with
        every recorded row; with ``drop_history=True`` they are deleted. With neither, the
        operation fails if any history exists, so that none is lost by accident.
        """
        operations.invoke(cls(keep_history=keep_history, drop_history=drop_history))

    def statements(self) -> list[str]:
        steps = [] if self.keep_history or self.drop_history else ["refuse_if_history"]
        steps.append("remove_functions")
        if not self.keep_history:
            steps.append("drop_history")
        return [statement for step in steps for statement in sql.statements(step)]

    def reverse(self) -> InstallAuditOp:
        return InstallAuditOp()

    def to_diff_tuple(self) -> tuple[str, bool, bool]:
        return ("uninstall_audit", self.keep_history, self.drop_history)


class _TrackingOp(MigrateOperation):
    sql_function: str

    def __init__(self, table_name: str, schema: str | None = None) -> None:
        self.table_name = table_name
        self.schema = schema

    def statement(self, operations: Operations) -> str:
        target = qualified_name_literal(self.table_name, self.schema)
        return f"select audit.{self.sql_function}({target}::regclass)"

    def to_diff_tuple(self) -> tuple[str, str | None, str]:
        return (self.sql_function, self.schema, self.table_name)


@Operations.register_operation("enable_tracking")
class EnableTrackingOp(_TrackingOp):
    """Start recording every change of one table."""

    sql_function = "enable_tracking"

    @classmethod
    def enable_tracking(
        cls, operations: Operations, table_name: str, *, schema: str | None = None
    ) -> None:
        """Record every INSERT, UPDATE, DELETE and TRUNCATE of a table in the audit trail.

        Idempotent. The table needs a primary key.
        """
        operations.invoke(cls(table_name, schema=schema))

    def reverse(self) -> DisableTrackingOp:
        return DisableTrackingOp(self.table_name, schema=self.schema)


@Operations.register_operation("disable_tracking")
class DisableTrackingOp(_TrackingOp):
    """Stop recording changes of one table; its history stays."""

    sql_function = "disable_tracking"

    @classmethod
    def disable_tracking(
        cls, operations: Operations, table_name: str, *, schema: str | None = None
    ) -> None:
        """Stop recording changes of a table. Its recorded history stays. Idempotent."""
        operations.invoke(cls(table_name, schema=schema))

    def reverse(self) -> EnableTrackingOp:
        return EnableTrackingOp(self.table_name, schema=self.schema)


@Operations.implementation_for(InstallAuditOp)
def _install_audit(operations: Operations, operation: InstallAuditOp) -> None:
    _emit(operations, sql.statements("install"))


@Operations.implementation_for(UninstallAuditOp)
def _uninstall_audit(operations: Operations, operation: UninstallAuditOp) -> None:
    _emit(operations, operation.statements())


@Operations.implementation_for(EnableTrackingOp)
@Operations.implementation_for(DisableTrackingOp)
def _toggle_tracking(operations: Operations, operation: _TrackingOp) -> None:
    _emit(operations, [operation.statement(operations)])
