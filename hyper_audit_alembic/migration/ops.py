"""The audit operations: one ``MigrateOperation`` class per ``op.`` directive.

Each class holds what a migration says (its arguments, checked by :mod:`.options`), how
autogenerate undoes it (``reverse()``) and compares it (``to_diff_tuple()``), and the
SQL it stands for (``statements()``, assembled by :mod:`.statements`). Running that SQL is
:mod:`.toimpl`'s job, writing the op into a migration :mod:`.render`'s, and making each
class an ``op.`` directive :mod:`hyper_audit_alembic.plugin`'s, in one table.

Reading the database happens at autogenerate time (:mod:`.catalog`), never here, so
every op works the same online and in offline (``--sql``) mode.

- the audit trail: ``install_audit``, ``uninstall_audit``;
- tracking one table: ``enable_tracking``, ``alter_tracking``, ``disable_tracking``
  (and autogenerate's :class:`ResyncTrackingOp`);
- how ``audit.record_version`` keeps years of history: ``set_audit_timescale_policy``,
  ``set_audit_partitioning``, ``convert_audit_to_hypertable``;
- a Citus cluster: ``distribute_audit``;
- the audit schema across releases and installs: ``upgrade_audit``,
  ``downgrade_audit``, ``adopt_audit``, ``unadopt_audit``. ``upgrade_audit`` runs
  ``sql/steps/<n>.sql`` for each version after ``from_version``, then the current
  functions; ``downgrade_audit`` runs ``sql/steps/<n>.down.sql`` back, then
  ``sql/released/<to_version>.sql``; the SQL checks the installed version itself.
  ``adopt_audit`` takes over an install of the reference design (supa_audit 0.3 or
  hyper_audit) keeping every row and record id; its reverse, ``unadopt_audit``, refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Any, Literal

from alembic.operations import MigrateOperation, Operations

from .. import sql
from ..errors import AuditOperationError
from . import statements
from .options import (
    PARTITION_DEFAULTS,
    UNCHANGED,
    IntervalOption,
    TimescaleOptions,
    check_commit,
    check_interval,
    check_partition_option,
    check_snapshot,
    check_version_change,
    install_options,
    tracking_options,
)


class InstallAuditOp(MigrateOperation):
    """Install (or complete) the audit schema."""

    def __init__(
        self,
        timescale: Mapping[str, str | None] | bool | None = None,
        partitioned: Mapping[str, Any] | bool | None = None,
    ) -> None:
        # The layout options for years of history.
        self.timescale, self.partitioned = install_options(timescale, partitioned)

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

    def statements(self) -> list[str]:
        return statements.install_statements(self.timescale, self.partitioned)

    def reverse(self) -> UninstallAuditOp:
        return UninstallAuditOp(keep_history=True)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        options = []
        if self.timescale is not None:
            options.append(("timescale", tuple(sorted(self.timescale.given().items()))))
        if self.partitioned is not None:
            options.append(("partitioned", tuple(sorted(self.partitioned.items()))))
        return ("install_audit", *options)


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
        return statements.uninstall_statements(self.keep_history, self.drop_history)

    def reverse(self) -> InstallAuditOp:
        return InstallAuditOp()

    def to_diff_tuple(self) -> tuple[str, bool, bool]:
        return ("uninstall_audit", self.keep_history, self.drop_history)


class TrackingOp(MigrateOperation):
    """What op.enable_tracking(), op.alter_tracking() and op.disable_tracking() share:
    one table (``sql_function`` is the audit function the op's SQL calls)."""

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
        options = tracking_options(exclude, skip_unchanged, on_replica)
        self.exclude = list(options.exclude)
        self.skip_unchanged = options.skip_unchanged
        self.on_replica = options.on_replica

    @property
    def has_options(self) -> bool:
        return bool(self.exclude) or self.skip_unchanged or self.on_replica

    def statement(self, operations: Operations | None = None) -> str:
        """The op's DO block: its checks, then the call (sql/untrack_table.sql).

        ``operations`` is not used: the SQL does not depend on the database it runs on.
        """
        return statements.untrack_table(self.table_name, self.schema)

    def statements(self) -> list[str]:
        return [self.statement()]

    def to_diff_tuple(self) -> tuple[str, str | None, str]:
        return (self.sql_function, self.schema, self.table_name)


class EnableTrackingOp(TrackingOp):
    """Start recording every change of one table (and, with ``snapshot``, its rows now)."""

    sql_function = "enable_tracking"

    def __init__(
        self,
        table_name: str,
        schema: str | None = None,
        *,
        exclude: Iterable[str] = (),
        skip_unchanged: bool = False,
        on_replica: bool = False,
        snapshot: bool = False,
    ) -> None:
        super().__init__(
            table_name,
            schema,
            exclude=exclude,
            skip_unchanged=skip_unchanged,
            on_replica=on_replica,
        )
        # One-off, not an option the triggers keep: the baseline is taken once.
        self.snapshot = check_snapshot(snapshot)

    def statements(self) -> list[str]:
        tracking = [self.statement()]
        if self.snapshot:
            tracking.append(statements.snapshot_table(self.table_name, self.schema))
        return tracking

    def passes_options(self) -> bool:
        # Without options: the one-argument form (a tracked table keeps its options).
        return self.has_options

    def statement(self, operations: Operations | None = None) -> str:
        """The op's DO block: its checks, then the call (sql/track_table.sql)."""
        with_options = self.passes_options()
        return statements.track_table(
            self.table_name,
            self.schema,
            exclude=self.exclude if with_options else None,
            skip_unchanged=self.skip_unchanged if with_options else None,
            # Null unless asked for: the three-argument form (audit schema version 2)
            # then tracks the table without it.
            on_replica=True if with_options and self.on_replica else None,
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
        snapshot: bool = False,
    ) -> None:
        """Record every INSERT, UPDATE, DELETE and TRUNCATE of a table in the audit trail.

        Idempotent. The table needs a primary key. ``exclude``: columns never recorded
        (not primary-key columns); ``skip_unchanged=True``: an UPDATE that changes no
        recorded column writes no audit row; ``on_replica=True``: also record the changes
        a logical replication subscriber applies (row-level ENABLE ALWAYS triggers; audit
        schema version 3). Without options, a table tracked already keeps its options
        (op.alter_tracking() changes them).

        ``snapshot=True`` (audit schema version 4): then record one ``SNAPSHOT`` audit row
        per row the table holds, in this migration's transaction, so that the trail
        rebuilds the table from now on (``table_as_of()``). Writes nothing when the trail
        is complete already (a table tracked while empty, or snapshotted before). For a
        large table outside a migration: ``call audit.snapshot('t', batch_size => 10000)``.
        """
        operations.invoke(
            cls(
                table_name,
                schema=schema,
                exclude=exclude,
                skip_unchanged=skip_unchanged,
                on_replica=on_replica,
                snapshot=snapshot,
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
        snapshot = ("snapshot",) if self.snapshot else ()
        if not self.has_options:
            return (*super().to_diff_tuple(), *snapshot)
        return (
            *super().to_diff_tuple(),
            tuple(self.exclude),
            self.skip_unchanged,
            *((True,) if self.on_replica else ()),
            *snapshot,
        )


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
        existing = tracking_options(existing_exclude, existing_skip_unchanged, existing_on_replica)
        self.existing_exclude = list(existing.exclude)
        self.existing_skip_unchanged = existing.skip_unchanged
        self.existing_on_replica = existing.on_replica

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


class DisableTrackingOp(TrackingOp):
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


class ResyncTrackingOp(EnableTrackingOp):
    """``op.enable_tracking`` for a tracked table: its primary key changed, or its flag
    asks for a snapshot (``snapshot=True``) its trail does not have yet.

    Autogenerate's own op, not a directive: written as ``op.enable_tracking(...)`` both
    ways, because undoing a re-sync or a snapshot is not to stop tracking (the SNAPSHOT
    rows, history, stay).
    """

    def reverse(self) -> EnableTrackingOp:  # type: ignore[override]  # on purpose
        return EnableTrackingOp(self.table_name, schema=self.schema)


class AlterLayoutOp(MigrateOperation):
    """Set some layout options; carries the previous values (``existing_*``) to undo it."""

    caller: str
    names: list[str]

    def __init__(self, new: dict[str, Any], existing: dict[str, Any]) -> None:
        self.new = {name: new.get(name, UNCHANGED) for name in self.names}
        self.existing = {name: existing.get(name, UNCHANGED) for name in self.names}

    def reverse(self) -> AlterLayoutOp:
        """Back to the existing values; an option whose previous value is not known stays."""
        back = {
            name: self.existing[name] if self.new[name] is not UNCHANGED else UNCHANGED
            for name in self.names
        }
        again = {
            name: self.new[name] if back[name] is not UNCHANGED else UNCHANGED
            for name in self.names
        }
        return type(self)(back, again)

    def arguments(self) -> list[str]:
        """The keyword arguments as a migration writes them: the new values given, then
        the existing ones known."""
        args = [
            f"{name}={self.new[name]!r}" for name in self.names if self.new[name] is not UNCHANGED
        ]
        args += [
            f"existing_{name}={self.existing[name]!r}"
            for name in self.names
            if self.existing[name] is not UNCHANGED
        ]
        return args

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return (
            self.caller.removeprefix("op."),
            tuple(
                (name, self.new[name], self.existing[name])
                for name in self.names
                if self.new[name] is not UNCHANGED
            ),
        )


class SetAuditTimescalePolicyOp(AlterLayoutOp):
    """Change the TimescaleDB options of the audit hypertable."""

    caller = "op.set_audit_timescale_policy"
    names = ["chunk_interval", "compress_after", "retention"]

    def __init__(self, new: dict[str, Any], existing: dict[str, Any]) -> None:
        TimescaleOptions.checked(self.caller, **new)
        for name, value in existing.items():
            if value not in (None, UNCHANGED):
                check_interval(value, self.caller, f"existing_{name}")
        super().__init__(new, existing)

    @classmethod
    def set_audit_timescale_policy(
        cls,
        operations: Operations,
        *,
        chunk_interval: IntervalOption = UNCHANGED,
        compress_after: IntervalOption = UNCHANGED,
        retention: IntervalOption = UNCHANGED,
        existing_chunk_interval: IntervalOption = UNCHANGED,
        existing_compress_after: IntervalOption = UNCHANGED,
        existing_retention: IntervalOption = UNCHANGED,
    ) -> None:
        """Change the chunk interval, compression and retention of the audit hypertable.

        Options not given stay as they are. ``compress_after`` and ``retention`` are
        intervals such as ``'30 days'`` or None to remove the policy. The new chunk interval
        applies to chunks created from now on; chunks compressed already stay compressed.
        The ``existing_*`` arguments record the previous values, so that autogenerate can
        write the downgrade; they change nothing.
        """
        operations.invoke(
            cls(
                {
                    "chunk_interval": chunk_interval,
                    "compress_after": compress_after,
                    "retention": retention,
                },
                {
                    "chunk_interval": existing_chunk_interval,
                    "compress_after": existing_compress_after,
                    "retention": existing_retention,
                },
            )
        )

    def statements(self) -> list[str]:
        return statements.timescale_policy_statements(self.caller, TimescaleOptions(**self.new))


class SetAuditPartitioningOp(AlterLayoutOp):
    """Change the settings of the partitioned audit table."""

    caller = "op.set_audit_partitioning"
    names = list(PARTITION_DEFAULTS)

    def __init__(self, new: dict[str, Any], existing: dict[str, Any]) -> None:
        for values in (new, existing):
            for name, value in values.items():
                if value is not UNCHANGED:
                    check_partition_option(self.caller, name, value)
        super().__init__(new, existing)

    @classmethod
    def set_audit_partitioning(
        cls,
        operations: Operations,
        *,
        interval: str | EllipsisType = UNCHANGED,
        premake: int | EllipsisType = UNCHANGED,
        retention: IntervalOption = UNCHANGED,
        retention_action: Literal["detach", "drop"] | EllipsisType = UNCHANGED,
        existing_interval: str | EllipsisType = UNCHANGED,
        existing_premake: int | EllipsisType = UNCHANGED,
        existing_retention: IntervalOption = UNCHANGED,
        existing_retention_action: Literal["detach", "drop"] | EllipsisType = UNCHANGED,
    ) -> None:
        """Change the settings of the partitioned audit table (see install_audit).

        Options not given stay as they are. They take effect at the next run of
        ``audit.maintain_partitions()``: a new interval for partitions created from then
        on, a retention (or None, to keep every partition) for the partitions past it. The
        ``existing_*`` arguments record the previous values, so that autogenerate can write
        the downgrade; they change nothing.
        """
        operations.invoke(
            cls(
                {
                    "interval": interval,
                    "premake": premake,
                    "retention": retention,
                    "retention_action": retention_action,
                },
                {
                    "interval": existing_interval,
                    "premake": existing_premake,
                    "retention": existing_retention,
                    "retention_action": existing_retention_action,
                },
            )
        )

    def statements(self) -> list[str]:
        return statements.partitioning_statements(self.caller, self.new)


class ConvertAuditToHypertableOp(MigrateOperation):
    """Make a plain audit.record_version a TimescaleDB hypertable, keeping every row."""

    caller = "op.convert_audit_to_hypertable"

    def __init__(
        self,
        chunk_interval: str | None = None,
        compress_after: str | None = None,
        retention: str | None = None,
    ) -> None:
        given = {
            "chunk_interval": chunk_interval,
            "compress_after": compress_after,
            "retention": retention,
        }
        self.options = TimescaleOptions.checked(
            self.caller, **{name: value for name, value in given.items() if value is not None}
        )

    @classmethod
    def convert_audit_to_hypertable(
        cls,
        operations: Operations,
        *,
        chunk_interval: str | None = None,
        compress_after: str | None = None,
        retention: str | None = None,
    ) -> None:
        """Convert the audit table into a hypertable on ``ts``, keeping every row.

        For a database that gained the timescaledb extension after the audit trail was
        installed. ``chunk_interval`` (TimescaleDB's default when None) applies to the
        chunks the rows move into; ``compress_after`` and ``retention`` add those policies.
        Does nothing but the policies when the table is a hypertable already.
        """
        operations.invoke(
            cls(chunk_interval=chunk_interval, compress_after=compress_after, retention=retention)
        )

    def statements(self) -> list[str]:
        return statements.convert_to_hypertable_statements(self.caller, self.options)

    def arguments(self) -> list[str]:
        """The keyword arguments as a migration writes them: the options given."""
        return [f"{name}={value!r}" for name, value in self.options.given().items()]

    def reverse(self) -> MigrateOperation:
        raise NotImplementedError(
            "op.convert_audit_to_hypertable() has no automatic reverse: a hypertable's rows "
            "go back into a plain table only by copying them"
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("convert_audit_to_hypertable", tuple(sorted(self.options.given().items())))


class DistributeAuditOp(MigrateOperation):
    """Make audit.record_version a Citus distributed table and track every tracked table
    with the Citus write path (sql/citus_distribute.sql)."""

    caller = "op.distribute_audit"

    def __init__(self, undoing: bool = False) -> None:
        # The reverse autogenerate writes into a downgrade: a comment, no SQL (a
        # distributed audit table goes back to the coordinator only by hand).
        self.undoing = undoing

    @classmethod
    def distribute_audit(cls, operations: Operations) -> None:
        """Distribute the audit table over a Citus cluster, by ``table_oid``; run on the
        coordinator after ``op.install_audit()``.

        Its primary key becomes ``(table_oid, id)``; recorded rows move to the shards. Every
        table tracked now, and every table ``op.enable_tracking()`` tracks from then on
        (local or distributed), is tracked row by row by ``audit.citus_row_change``, which
        writes the rows a single node writes (the coordinator's table oid, schema and name;
        the same record ids) from whichever shard a change happens on. Idempotent. Needs
        the citus extension in the database, with its workers added.
        """
        operations.invoke(cls())

    def statements(self) -> list[str]:
        return [] if self.undoing else list(sql.statements("citus_distribute"))

    def reverse(self) -> DistributeAuditOp:
        """Nothing to run: a downgrade keeps the audit table distributed (its renderer
        writes a comment saying how to undo it by hand)."""
        return DistributeAuditOp(undoing=not self.undoing)

    def to_diff_tuple(self) -> tuple[str, ...]:
        return ("distribute_audit", *(("undoing",) if self.undoing else ()))


class UpgradeAuditOp(MigrateOperation):
    """Upgrade the audit schema from one released version to a later one."""

    def __init__(self, from_version: int, to_version: int, commit: bool = False) -> None:
        check_version_change("op.upgrade_audit", from_version, to_version, upward=True)
        self.from_version = from_version
        self.to_version = to_version
        self.commit = check_commit(commit)

    @classmethod
    def upgrade_audit(
        cls, operations: Operations, *, from_version: int, to_version: int, commit: bool = False
    ) -> None:
        """Upgrade the audit schema from ``from_version`` to ``to_version``.

        Every recorded row stays and stays readable; tracked tables stay tracked. Fails,
        changing nothing, unless the database's audit schema is at ``from_version``.

        ``commit=True``: commit the migration's transaction once the upgrade is done and
        go on in a new one (Alembic's ``autocommit_block()``; ``COMMIT``/``BEGIN`` in
        offline SQL). Needed when an ``op.enable_tracking(..., snapshot=True)`` follows
        in the same transaction: PostgreSQL cannot write the label SNAPSHOT that the
        upgrade to version 4 adds before that commits. Autogenerate writes it then. As
        with every ``autocommit_block()``, what ran before stays committed if a later
        operation fails.
        """
        operations.invoke(cls(from_version, to_version, commit=commit))

    def commits(self) -> bool:
        """Whether the migration's transaction is committed after the upgrade."""
        return self.commit

    def statements(self) -> list[str]:
        return statements.upgrade_statements(self.from_version, self.to_version)

    def reverse(self) -> DowngradeAuditOp:
        return DowngradeAuditOp(self.to_version, self.from_version)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("upgrade_audit", self.from_version, self.to_version, *(("commit",) * self.commit))


class DowngradeAuditOp(MigrateOperation):
    """Take the audit schema back to an earlier released version, keeping the history."""

    def __init__(self, from_version: int, to_version: int) -> None:
        check_version_change("op.downgrade_audit", from_version, to_version, upward=False)
        self.from_version = from_version
        self.to_version = to_version

    @classmethod
    def downgrade_audit(cls, operations: Operations, *, from_version: int, to_version: int) -> None:
        """Take the audit schema from ``from_version`` back to ``to_version``.

        Recorded rows and values stay (columns a later version added keep what they hold);
        tracked tables stay tracked. Fails, changing nothing, unless the database's audit
        schema is at ``from_version``.
        """
        operations.invoke(cls(from_version, to_version))

    def statements(self) -> list[str]:
        return sql.downgrade_statements(self.from_version, self.to_version)

    def reverse(self) -> UpgradeAuditOp:
        return UpgradeAuditOp(self.to_version, self.from_version)

    def to_diff_tuple(self) -> tuple[str, int, int]:
        return ("downgrade_audit", self.from_version, self.to_version)


class AdoptAuditOp(MigrateOperation):
    """Take over an existing supa_audit / hyper_audit install."""

    @classmethod
    def adopt_audit(cls, operations: Operations) -> None:
        """Take over an install of the reference design (supa_audit 0.3, hyper_audit).

        Keeps ``audit.record_version`` with every row and record id, detaches the audit
        objects from the ``supa_audit`` extension (then drops the empty extension), installs
        the current audit schema over them, moves every tracked table from the triggers
        ``audit_i_u_d`` / ``audit_t`` to ours in the same transaction, and only then drops
        the reference's trigger functions. Over a database without such an install it is
        ``op.install_audit()``. It cannot be undone (see ``op.unadopt_audit()``).
        """
        operations.invoke(cls())

    def statements(self) -> list[str]:
        return sql.install_statements()

    def reverse(self) -> UnadoptAuditOp:
        return UnadoptAuditOp()

    def to_diff_tuple(self) -> tuple[str]:
        return ("adopt_audit",)


UNADOPT_REFUSAL = (
    "op.unadopt_audit: the take-over of an existing supa_audit / hyper_audit install "
    "(op.adopt_audit()) cannot be undone: the reference's trigger functions (and its "
    "extension, if it was one) are gone, and the tables it tracked are tracked by "
    "hyper_audit's triggers. The history is complete. To downgrade past this migration and "
    "keep the audit trail as it is, delete this op.unadopt_audit() line from the "
    "migration's downgrade(); to remove the audit trail as well, replace it with "
    "op.uninstall_audit(keep_history=True)."
)


class UnadoptAuditOp(MigrateOperation):
    """The downgrade of ``op.adopt_audit()``: refuses with what to do instead."""

    @classmethod
    def unadopt_audit(cls, operations: Operations) -> None:
        """Refuse: an adoption cannot be undone. The error says what to write instead."""
        operations.invoke(cls())

    def reverse(self) -> AdoptAuditOp:
        return AdoptAuditOp()

    def to_diff_tuple(self) -> tuple[str]:
        return ("unadopt_audit",)
