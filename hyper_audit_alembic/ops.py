"""The audit operations: one small class per ``op.`` directive.

Each op only emits SQL. Reading the database happens at autogenerate time, never
here, so every op works the same online and in offline (``--sql``) mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alembic.operations import MigrateOperation, Operations
from alembic.util import CommandError

from . import sql
from .catalog import TRACKED_BY_MIGRATION
from .quoting import qualified_name


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
        # no_parameters: the driver gets the text alone, so a '%' in a table name is not
        # read as a placeholder (psycopg2 and psycopg 3 interpolate when params are passed).
        connection = operations.get_bind()
        for statement in statements:
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


@Operations.register_operation("install_audit")
class InstallAuditOp(MigrateOperation):
    """Install (or complete) the audit schema."""

    def __init__(
        self,
        timescale: Mapping[str, str | None] | bool | None = None,
        partitioned: Mapping[str, Any] | bool | None = None,
    ) -> None:
        # The layout options for years of history (layouts.py checks them).
        self.timescale, self.partitioned = layouts.install_options(timescale, partitioned)

    @classmethod
    def install_audit(
        cls,
        operations: Operations,
        *,
        timescale: Mapping[str, str | None] | bool | None = None,
        partitioned: Mapping[str, Any] | bool | None = None,
    ) -> None:
        """Install the audit schema: ``audit.record_version``, its functions and triggers.

        Safe over an existing audit schema: recorded history is kept.

        ``timescale={"chunk_interval": "7 days", "compress_after": "30 days",
        "retention": "5 years"}`` (each optional; needs the timescaledb extension):
        TimescaleDB options of the audit hypertable. ``partitioned={"interval": "1 month",
        "premake": 3, "retention": None, "retention_action": "detach"}`` (these are the
        defaults; ``True`` takes them all), for servers without TimescaleDB: the audit
        table range-partitioned by ``ts``, kept by ``audit.maintain_partitions()``.
        """
        operations.invoke(cls(timescale=timescale, partitioned=partitioned))

    def reverse(self) -> UninstallAuditOp:
        return UninstallAuditOp(keep_history=True)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        options = []
        if self.timescale is not None:
            options.append(("timescale", tuple(sorted(self.timescale.given().items()))))
        if self.partitioned is not None:
            options.append(("partitioned", tuple(sorted(self.partitioned.items()))))
        return ("install_audit", *options)


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


def check_tracking_options(exclude: Iterable[str], skip_unchanged: bool) -> tuple[list[str], bool]:
    """The options of a tracked table, checked: sorted distinct column names, a bool."""
    columns = [] if isinstance(exclude, str) else list(exclude)
    if isinstance(exclude, str) or not all(isinstance(c, str) and c for c in columns):
        raise AuditOperationError(
            f"hyper_audit: exclude must be a list of column names, not {exclude!r}"
        )
    if not isinstance(skip_unchanged, bool):
        raise AuditOperationError(
            f"hyper_audit: skip_unchanged must be True or False, not {skip_unchanged!r}"
        )
    return sorted(set(columns)), skip_unchanged


def check_on_replica(on_replica: bool) -> bool:
    """The on_replica option, checked."""
    if not isinstance(on_replica, bool):
        raise AuditOperationError(
            f"hyper_audit: on_replica must be True or False, not {on_replica!r}"
        )
    return on_replica


class _TrackingOp(MigrateOperation):
    sql_function: str

    def __init__(
        self,
        table_name: str,
        schema: str | None = None,
        *,
        exclude: Iterable[str] = (),
        skip_unchanged: bool = False,
        on_replica: bool = False,
    ) -> None:
        self.table_name = table_name
        self.schema = schema
        self.exclude, self.skip_unchanged = check_tracking_options(exclude, skip_unchanged)
        self.on_replica = check_on_replica(on_replica)

    @property
    def has_options(self) -> bool:
        return bool(self.exclude) or self.skip_unchanged or self.on_replica

    def statement(self, operations: Operations) -> str:
        """The op's DO block: its checks, then the call (sql/untrack_table.sql)."""
        return sql.filled("untrack_table", {"target": qualified_name(self.table_name, self.schema)})

    def to_diff_tuple(self) -> tuple[str, str | None, str]:
        return (self.sql_function, self.schema, self.table_name)


@Operations.register_operation("enable_tracking")
class EnableTrackingOp(_TrackingOp):
    """Start recording every change of one table."""

    sql_function = "enable_tracking"

    def passes_options(self) -> bool:
        # Without options: the one-argument form (a tracked table keeps its options).
        return self.has_options

    def statement(self, operations: Operations) -> str:
        """The op's DO block: its checks, then the call (sql/track_table.sql)."""
        with_options = self.passes_options()
        return sql.filled(
            "track_table",
            {
                "target": qualified_name(self.table_name, self.schema),
                "exclude": self.exclude if with_options else None,
                "skip_unchanged": self.skip_unchanged if with_options else None,
                # Null unless asked for: the three-argument form (audit schema version 2)
                # then tracks the table without it.
                "on_replica": True if with_options and self.on_replica else None,
                "tracked_by_migration": TRACKED_BY_MIGRATION,
            },
        )

    @classmethod
    def enable_tracking(
        cls,
        operations: Operations,
        table_name: str,
        *,
        schema: str | None = None,
        exclude: Iterable[str] = (),
        skip_unchanged: bool = False,
        on_replica: bool = False,
    ) -> None:
        """Record every INSERT, UPDATE, DELETE and TRUNCATE of a table in the audit trail.

        Idempotent. The table needs a primary key. ``exclude``: columns never recorded
        (not primary-key columns); ``skip_unchanged=True``: an UPDATE that changes no
        recorded column writes no audit row; ``on_replica=True``: also record the changes
        a logical replication subscriber applies (row-level ENABLE ALWAYS triggers; audit
        schema version 3). Without options, a table tracked already keeps its options
        (op.alter_tracking() changes them).
        """
        operations.invoke(
            cls(
                table_name,
                schema=schema,
                exclude=exclude,
                skip_unchanged=skip_unchanged,
                on_replica=on_replica,
            )
        )

    def reverse(self) -> DisableTrackingOp:
        return DisableTrackingOp(
            self.table_name,
            schema=self.schema,
            exclude=self.exclude,
            skip_unchanged=self.skip_unchanged,
            on_replica=self.on_replica,
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        if not self.has_options:
            return super().to_diff_tuple()
        return (
            *super().to_diff_tuple(),
            tuple(self.exclude),
            self.skip_unchanged,
            *((True,) if self.on_replica else ()),
        )


@Operations.register_operation("alter_tracking")
class AlterTrackingOp(EnableTrackingOp):
    """Change the options of a tracked table (exclude, skip_unchanged, on_replica)."""

    def __init__(
        self,
        table_name: str,
        schema: str | None = None,
        *,
        exclude: Iterable[str] = (),
        skip_unchanged: bool = False,
        on_replica: bool = False,
        existing_exclude: Iterable[str] = (),
        existing_skip_unchanged: bool = False,
        existing_on_replica: bool = False,
    ) -> None:
        super().__init__(
            table_name,
            schema,
            exclude=exclude,
            skip_unchanged=skip_unchanged,
            on_replica=on_replica,
        )
        self.existing_exclude, self.existing_skip_unchanged = check_tracking_options(
            existing_exclude, existing_skip_unchanged
        )
        self.existing_on_replica = check_on_replica(existing_on_replica)

    def passes_options(self) -> bool:
        # Always explicit: going back to no options must clear them.
        return True

    @classmethod
    def alter_tracking(
        cls,
        operations: Operations,
        table_name: str,
        *,
        schema: str | None = None,
        exclude: Iterable[str] = (),
        skip_unchanged: bool = False,
        on_replica: bool = False,
        existing_exclude: Iterable[str] = (),
        existing_skip_unchanged: bool = False,
        existing_on_replica: bool = False,
    ) -> None:
        """Track a table with these options instead of the ``existing_`` ones (for undoing)."""
        operations.invoke(
            cls(
                table_name,
                schema=schema,
                exclude=exclude,
                skip_unchanged=skip_unchanged,
                on_replica=on_replica,
                existing_exclude=existing_exclude,
                existing_skip_unchanged=existing_skip_unchanged,
                existing_on_replica=existing_on_replica,
            )
        )

    def reverse(self) -> AlterTrackingOp:  # type: ignore[override]
        return AlterTrackingOp(
            self.table_name,
            schema=self.schema,
            exclude=self.existing_exclude,
            skip_unchanged=self.existing_skip_unchanged,
            on_replica=self.existing_on_replica,
            existing_exclude=self.exclude,
            existing_skip_unchanged=self.skip_unchanged,
            existing_on_replica=self.on_replica,
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return (
            "alter_tracking",
            self.schema,
            self.table_name,
            tuple(self.exclude),
            self.skip_unchanged,
            *((True,) if self.on_replica else ()),
        )


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
        # The options it was tracked with (autogenerate knows them) come back.
        return EnableTrackingOp(
            self.table_name,
            schema=self.schema,
            exclude=self.exclude,
            skip_unchanged=self.skip_unchanged,
            on_replica=self.on_replica,
        )


@Operations.implementation_for(InstallAuditOp)
def _install_audit(operations: Operations, operation: InstallAuditOp) -> None:
    _emit(operations, layouts.install_statements(operation.timescale, operation.partitioned))


@Operations.implementation_for(UninstallAuditOp)
def _uninstall_audit(operations: Operations, operation: UninstallAuditOp) -> None:
    _emit(operations, operation.statements())


@Operations.implementation_for(EnableTrackingOp)
@Operations.implementation_for(AlterTrackingOp)
@Operations.implementation_for(DisableTrackingOp)
def _toggle_tracking(operations: Operations, operation: _TrackingOp) -> None:
    _emit(operations, [operation.statement(operations)])


# The layout ops (they use _emit), the upgrade and adoption ops (lifecycle.py) and the
# renderers of every op, registered whenever the ops are.
from . import layouts, lifecycle, render  # noqa: E402, F401
