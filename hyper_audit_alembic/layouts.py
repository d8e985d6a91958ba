"""How ``audit.record_version`` keeps years of history: TimescaleDB or native partitions.

- TimescaleDB: ``op.install_audit(timescale={...})`` (chunk interval, compression after an
  age, retention), ``op.convert_audit_to_hypertable()`` for a database that gains
  TimescaleDB after the audit was installed, ``op.set_audit_timescale_policy()`` to change
  the options later (sql/timescale_policy.sql).
- Native partitioning by ``ts``, for servers without TimescaleDB:
  ``op.install_audit(partitioned={...})`` and ``op.set_audit_partitioning()``; the
  database's ``audit.maintain_partitions()`` does the rest (sql/partitioned.sql).
- Autogenerate: the layout declared in env.py, ``context.configure(...,
  hyper_audit={"timescale": {...}})`` or ``hyper_audit={"partitioned": {...}}``, against
  the database's (:func:`compare_layout`).

The operations check their values here and quote them into the SQL; every decision that
needs the database's state is made by the emitted SQL when it runs, so offline mode works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from alembic.autogenerate.render import renderers
from alembic.operations import MigrateOperation, Operations
from alembic.util import CommandError
from sqlalchemy import text

from . import sql
from .ops import AuditOperationError, _emit

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from sqlalchemy.engine import Connection


#: The value of an option that an operation leaves as it is: ``...`` (Alembic writes the
#: defaults of op directives into generated code, so the sentinel must be a builtin).
UNCHANGED: EllipsisType = ...

#: An interval option: text such as '30 days', None (no policy), or UNCHANGED.
IntervalOption: TypeAlias = "str | EllipsisType | None"

# Interval text as PostgreSQL reads it ('7 days', '1 month', '1 year 6 months', 'P1M').
# Nothing that could end a quoted literal or a dollar-quoted body, no '%' and no ':'.
_INTERVAL_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z. ]*")


def _interval(value: object, caller: str, name: str) -> str:
    if not isinstance(value, str) or not _INTERVAL_TEXT.fullmatch(value.strip()):
        raise AuditOperationError(
            f"{caller}: {name} must be an interval written as text, such as '30 days' or "
            f"'1 month', not {value!r}"
        )
    return value


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimescaleOptions:
    """TimescaleDB options; UNCHANGED ones are left as they are (not managed)."""

    chunk_interval: IntervalOption = UNCHANGED
    compress_after: IntervalOption = UNCHANGED
    retention: IntervalOption = UNCHANGED

    @classmethod
    def parse(cls, value: object, caller: str) -> TimescaleOptions:
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise AuditOperationError(
                f"{caller}: timescale= takes a dict of chunk_interval, compress_after and "
                f"retention, not {value!r}"
            )
        return cls.checked(caller, **value)

    @classmethod
    def checked(cls, caller: str, **values: object) -> TimescaleOptions:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AuditOperationError(
                f"{caller}: unknown TimescaleDB option {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(known)}"
            )
        for name, value in values.items():
            if value is UNCHANGED:
                continue
            if value is None:
                if name == "chunk_interval":
                    raise AuditOperationError(
                        f"{caller}: chunk_interval cannot be None; a hypertable always has one"
                    )
                continue
            _interval(value, caller, name)
        return cls(**values)  # type: ignore[arg-type]

    def given(self) -> dict[str, str | None]:
        """The options that are set, as keyword arguments."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not UNCHANGED
        }

    def placeholders(self) -> dict[str, str | bool | None]:
        values: dict[str, str | bool | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f"set_{f.name}"] = value is not UNCHANGED
            values[f.name] = None if value is UNCHANGED else value
        return values


PARTITION_DEFAULTS: dict[str, Any] = {
    "interval": "1 month",
    "premake": 3,
    "retention": None,
    "retention_action": "detach",
}


def check_partition_option(caller: str, name: str, value: object) -> None:
    if name not in PARTITION_DEFAULTS:
        raise AuditOperationError(
            f"{caller}: unknown partitioning option {name!r}; the options are "
            f"{', '.join(PARTITION_DEFAULTS)}"
        )
    if name == "interval":
        _interval(value, caller, name)
    elif name == "retention":
        if value is not None:
            _interval(value, caller, name)
    elif name == "premake":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AuditOperationError(
                f"{caller}: premake (how many partitions to create ahead) must be an int of 0 "
                f"or more, not {value!r}"
            )
    elif value not in ("detach", "drop"):
        raise AuditOperationError(
            f"{caller}: retention_action must be 'detach' (keep old partitions as tables of "
            f"their own) or 'drop' (delete them), not {value!r}"
        )


def parse_partitioned(value: object, caller: str) -> dict[str, Any]:
    """The partitioning options as given (a dict; True for the defaults), checked."""
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise AuditOperationError(
            f"{caller}: partitioned= takes a dict of {', '.join(PARTITION_DEFAULTS)} (or True "
            f"for the defaults), not {value!r}"
        )
    for name, option in value.items():
        check_partition_option(caller, name, option)
    return dict(value)


def install_options(
    timescale: object, partitioned: object
) -> tuple[TimescaleOptions | None, dict[str, Any] | None]:
    caller = "op.install_audit"
    if timescale not in (None, False) and partitioned not in (None, False):
        raise AuditOperationError(
            f"{caller}: choose timescale= or partitioned=, not both: TimescaleDB partitions "
            f"the audit table itself"
        )
    return (
        None if timescale in (None, False) else TimescaleOptions.parse(timescale, caller),
        None if partitioned in (None, False) else parse_partitioned(partitioned, caller),
    )


# -- SQL -------------------------------------------------------------------------------


#: The lookup indexes of a plain audit table that sql/indexes.sql makes again, composite
#: with ts, when the table becomes a hypertable (a test checks them against a plain
#: install's indexes).
MANAGED_INDEXES = (
    "record_version_ts",
    "record_version_record_id",
    "record_version_old_record_id",
    "record_version_table_oid",
)


def _timescale_block(caller: str, phase: str, options: TimescaleOptions) -> str:
    return sql.filled(
        "timescale_policy",
        {
            "caller": caller,
            "phase": phase,
            **options.placeholders(),
            "managed_indexes": list(MANAGED_INDEXES),
        },
    )


def _timescale_around(body: list[str]) -> list[str]:
    """The statements between the plan function's creation and its removal."""
    create, drop = sql.statements("timescale_plan")
    return [create, *body, drop]


def _partition_settings(
    caller: str, installing: bool, values: Mapping[str, Any]
) -> dict[str, sql.Value]:
    filled: dict[str, sql.Value] = {"caller": caller, "installing": installing}
    for name in PARTITION_DEFAULTS:
        given = name in values and values[name] is not UNCHANGED
        filled[f"set_{name}"] = given
        filled[name] = values[name] if given else None
    return filled


def install_statements(
    timescale: TimescaleOptions | None, partitioned: Mapping[str, Any] | None
) -> list[str]:
    caller = "op.install_audit"
    install = sql.install_statements()  # every step, the indexes, every function
    if partitioned is not None:
        settings = _partition_settings(caller, True, {**PARTITION_DEFAULTS, **partitioned})
        return [
            *sql.statements("partitioned_check"),
            *install,
            *sql.statements("partitioned"),
            sql.filled("partitioned_settings", settings),
            *sql.statements("partitioned_convert"),
        ]
    if timescale is not None:
        # A plain audit table is converted before the install, with the chunk interval;
        # a new one is created and converted by the install (indexes.sql); then the policies.
        return _timescale_around(
            [
                _timescale_block(caller, "install", timescale),
                *install,
                _timescale_block(caller, "policy", timescale),
            ],
        )
    return install


# -- operations ------------------------------------------------------------------------


def _changes(names: list[str], new: dict[str, Any], existing: dict[str, Any]) -> list[str]:
    """Keyword arguments as rendered: the new values, then the existing ones."""
    args = [f"{name}={new[name]!r}" for name in names if new[name] is not UNCHANGED]
    args += [
        f"existing_{name}={existing[name]!r}" for name in names if existing[name] is not UNCHANGED
    ]
    return args


class _AlterLayoutOp(MigrateOperation):
    """Set some options; carries the previous values (``existing_*``) to undo it."""

    caller: str
    names: list[str]

    def __init__(self, new: dict[str, Any], existing: dict[str, Any]) -> None:
        self.new = {name: new.get(name, UNCHANGED) for name in self.names}
        self.existing = {name: existing.get(name, UNCHANGED) for name in self.names}

    def reverse(self) -> _AlterLayoutOp:
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
        return _changes(self.names, self.new, self.existing)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return (
            self.caller.removeprefix("op."),
            tuple(
                (name, self.new[name], self.existing[name])
                for name in self.names
                if self.new[name] is not UNCHANGED
            ),
        )


@Operations.register_operation("set_audit_timescale_policy")
class SetAuditTimescalePolicyOp(_AlterLayoutOp):
    """Change the TimescaleDB options of the audit hypertable."""

    caller = "op.set_audit_timescale_policy"
    names = ["chunk_interval", "compress_after", "retention"]

    def __init__(self, new: dict[str, Any], existing: dict[str, Any]) -> None:
        TimescaleOptions.checked(self.caller, **new)
        for name, value in existing.items():
            if value not in (None, UNCHANGED):
                _interval(value, self.caller, f"existing_{name}")
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
        options = TimescaleOptions(**self.new)
        return _timescale_around([_timescale_block(self.caller, "policy", options)])


@Operations.register_operation("set_audit_partitioning")
class SetAuditPartitioningOp(_AlterLayoutOp):
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
        return [
            sql.filled("partitioned_settings", _partition_settings(self.caller, False, self.new))
        ]


@Operations.register_operation("convert_audit_to_hypertable")
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
        # indexes.sql, run after the conversion, makes the lookup indexes (composite with
        # ts) the way a fresh install has them.
        return _timescale_around(
            [
                _timescale_block(self.caller, "convert", self.options),
                *sql.statements("indexes"),
                _timescale_block(self.caller, "policy", self.options),
            ],
        )

    def arguments(self) -> list[str]:
        return [f"{name}={value!r}" for name, value in self.options.given().items()]

    def reverse(self) -> MigrateOperation:
        raise NotImplementedError(
            "op.convert_audit_to_hypertable() has no automatic reverse: a hypertable's rows "
            "go back into a plain table only by copying them"
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("convert_audit_to_hypertable", tuple(sorted(self.options.given().items())))


@Operations.implementation_for(SetAuditTimescalePolicyOp)
@Operations.implementation_for(SetAuditPartitioningOp)
@Operations.implementation_for(ConvertAuditToHypertableOp)
def _run_layout_op(
    operations: Operations,
    operation: SetAuditTimescalePolicyOp | SetAuditPartitioningOp | ConvertAuditToHypertableOp,
) -> None:
    _emit(operations, operation.statements())


# -- autogenerate ----------------------------------------------------------------------

CONFIG_KEY = "hyper_audit"


def declared_layout(
    opts: Mapping[str, Any],
) -> tuple[TimescaleOptions | None, dict[str, Any] | None]:
    """The layout env.py declares: ``context.configure(hyper_audit={...})``."""
    declared = opts.get(CONFIG_KEY)
    if declared is None:
        return None, None
    where = f"context.configure({CONFIG_KEY}=...)"
    if not isinstance(declared, Mapping):
        raise CommandError(
            f"hyper_audit: {where} takes a dict such as {{'timescale': {{...}}}} or "
            f"{{'partitioned': {{...}}}}, not {declared!r}"
        )
    unknown = sorted(set(declared) - {"timescale", "partitioned"})
    if unknown:
        raise CommandError(
            f"hyper_audit: unknown key {', '.join(map(repr, unknown))} in {where}; "
            f"the keys are 'timescale' and 'partitioned'"
        )
    try:
        return install_options(declared.get("timescale"), declared.get("partitioned"))
    except AuditOperationError as exc:
        raise CommandError(str(exc).replace("op.install_audit", f"hyper_audit: {where}")) from exc


def declared_install_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the op.install_audit() that autogenerate writes."""
    timescale, partitioned = declared_layout(opts)
    if timescale is not None:
        return {"timescale": timescale.given()}
    if partitioned is not None:
        return {"partitioned": partitioned}
    return {}


_LAYOUT = """
select
    (select c.relkind::text from pg_catalog.pg_class c
     where c.oid = pg_catalog.to_regclass('audit.record_version')),
    (select n.nspname::text from pg_catalog.pg_extension e
     join pg_catalog.pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb'),
    pg_catalog.to_regclass('audit.settings') is not null,
    array(select cast(cast(v as interval) as text) from unnest(cast(:wanted as text[])) v)
"""

_PARTITION_SETTINGS = """
select cast(partition_interval as text), premake, cast(retention as text), retention_action
from audit.settings where layout = 'partitioned'
"""

_TIMESCALE_POLICY = """
select
    exists (
        select from timescaledb_information.hypertables
        where hypertable_schema = 'audit' and hypertable_name = 'record_version'
    ),
    (select cast(time_interval as text) from timescaledb_information.dimensions
     where hypertable_schema = 'audit' and hypertable_name = 'record_version'
        and column_name = 'ts'),
    (select cast(cast(config ->> 'compress_after' as interval) as text)
     from timescaledb_information.jobs
     where proc_name = 'policy_compression'
        and hypertable_schema = 'audit' and hypertable_name = 'record_version'),
    (select cast(cast(config ->> 'drop_after' as interval) as text)
     from timescaledb_information.jobs
     where proc_name = 'policy_retention'
        and hypertable_schema = 'audit' and hypertable_name = 'record_version')
"""


@dataclass(frozen=True)
class LayoutState:
    """The layout of an installed audit table, as read from the catalog."""

    layout: str  # 'missing', 'plain', 'partitioned', 'hypertable'
    timescale_installed: bool
    #: The wanted interval texts in the server's own text form (to compare).
    normalized: dict[str, str]
    #: Current values, in the server's text form (intervals) or as stored.
    current: dict[str, Any]


def read_layout(connection: Connection, wanted: list[str]) -> LayoutState:
    """The audit table's layout and options: at most three catalog queries."""
    kind, timescale_schema, has_settings, normalized = connection.execute(
        text(_LAYOUT), {"wanted": wanted}
    ).one()
    layout = {None: "missing", "p": "partitioned"}.get(kind, "plain")
    current: dict[str, Any] = {}
    if has_settings:
        row = connection.execute(text(_PARTITION_SETTINGS)).first()
        if row is not None:
            current.update(zip(PARTITION_DEFAULTS, row, strict=True))
    if timescale_schema is not None and layout == "plain":
        hypertable, *values = connection.execute(text(_TIMESCALE_POLICY)).one()
        if hypertable:
            layout = "hypertable"
            names = ("chunk_interval", "compress_after", "retention")
            current.update(zip(names, values, strict=True))
    if layout == "partitioned" and not current:
        layout = "plain"  # partitioned by hand, not by us: nothing to compare
    return LayoutState(
        layout=layout,
        timescale_installed=timescale_schema is not None,
        normalized=dict(zip(wanted, normalized, strict=True)),
        current=current,
    )


def _differences(
    wanted: Mapping[str, Any], state: LayoutState, intervals: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    new: dict[str, Any] = {}
    existing: dict[str, Any] = {}
    for name, value in wanted.items():
        now = state.current.get(name)
        same = (
            (value is None and now is None)
            or (value is not None and now is not None and state.normalized[value] == now)
            if name in intervals
            else value == now
        )
        if not same:
            new[name] = value
            existing[name] = now
    return new, existing


def compare_layout(autogen_context: AutogenContext, upgrade_ops: UpgradeOps) -> None:
    """Propose the change of layout options that env.py declares; an error where the
    declared layout is not the database's (that conversion is a migration to write)."""
    timescale, partitioned = declared_layout(autogen_context.opts)
    if timescale is None and partitioned is None:
        return
    assert autogen_context.connection is not None
    if timescale is not None:
        wanted: dict[str, Any] = timescale.given()
        intervals = set(wanted)
    else:
        assert partitioned is not None
        wanted = {**PARTITION_DEFAULTS, **partitioned}
        intervals = {"interval", "retention"}
    texts = sorted({v for k, v in wanted.items() if k in intervals and v is not None})
    state = read_layout(autogen_context.connection, texts)
    if state.layout == "missing":
        return  # nothing installed: op.install_audit() carries the options
    where = f"env.py declares hyper_audit={{'{'timescale' if timescale else 'partitioned'}': ...}}"
    if timescale is not None:
        if state.layout != "hypertable":
            if state.layout == "partitioned":
                reason = (
                    "audit.record_version is natively partitioned, which TimescaleDB cannot convert"
                )
            elif state.timescale_installed:
                reason = "audit.record_version is not a hypertable"
            else:
                reason = "the timescaledb extension is not installed in this database"
            raise CommandError(
                f"hyper_audit: {where}, but {reason}. Convert the audit table in a migration "
                f"written by hand (create extension timescaledb, then "
                f"op.convert_audit_to_hypertable(...), which keeps every row), or remove the "
                f"'timescale' options from env.py."
            )
        new, existing = _differences(wanted, state, intervals)
        if new:
            upgrade_ops.ops.append(SetAuditTimescalePolicyOp(new, existing))
        return
    if state.layout != "partitioned":
        raise CommandError(
            f"hyper_audit: {where}, but audit.record_version is "
            f"{'a hypertable' if state.layout == 'hypertable' else 'not partitioned'}. "
            f"Convert the audit table in a migration written by hand "
            f"(op.install_audit(partitioned={{...}}) converts a plain audit table, keeping every "
            f"row), or remove the 'partitioned' options from env.py."
        )
    new, existing = _differences(wanted, state, intervals)
    if new:
        upgrade_ops.ops.append(SetAuditPartitioningOp(new, existing))


# -- rendering -------------------------------------------------------------------------
# Here rather than in render.py: render.py is imported while this module may be half
# loaded (ops imports both).
from .render import _call  # noqa: E402


@renderers.dispatch_for(SetAuditTimescalePolicyOp, replace=True)
@renderers.dispatch_for(SetAuditPartitioningOp, replace=True)
@renderers.dispatch_for(ConvertAuditToHypertableOp, replace=True)
def render_layout(
    autogen_context: AutogenContext,
    op: SetAuditTimescalePolicyOp | SetAuditPartitioningOp | ConvertAuditToHypertableOp,
) -> str:
    return _call(autogen_context, op.caller.removeprefix("op."), *op.arguments())
