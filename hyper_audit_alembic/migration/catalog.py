"""Every read of a database's audit state, for autogenerate, in a constant number of queries.

What is installed (our audit schema and its version, or the reference design's to adopt),
which tables are tracked with which key columns and options (:func:`read_audit_state`),
and the audit table's layout and its options (:func:`read_layout`). The operations never
read the database (their SQL decides at run time), so these reads are autogenerate's alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from .options import NO_OPTIONS, PARTITION_DEFAULTS, TrackingOptions

#: The comment op.enable_tracking() puts on a table's audit_truncate trigger: tracking that
#: a migration enabled, as opposed to a hand-written ``select audit.enable_tracking(...)``.
TRACKED_BY_MIGRATION = "tracked by a hyper_audit_alembic migration"

# The reference design (supa_audit 0.3, hyper_audit) is recognised by its trigger functions.
_REFERENCE_FUNCTIONS = (
    "to_regprocedure('audit.insert_update_delete_trigger()'),"
    " to_regprocedure('audit.truncate_trigger()')"
)

_INSTALLED = f"""
select
    to_regprocedure('audit.enable_tracking(regclass)') is not null,
    to_regclass('audit.schema_version') is not null,
    array(
        select n.nspname::text
        from pg_catalog.pg_namespace n
        join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_namespace'::regclass
            and d.objid = n.oid and d.deptype = 'e'
    ),
    coalesce({_REFERENCE_FUNCTIONS}) is not null,
    to_regclass('audit.trail_complete_since') is not null
"""

# Our tracked tables (with the key columns and whether a migration tracked them), and the
# tables the reference design's triggers track (ours is false). Triggers are known by their
# function, never by name alone: anyone with TRIGGER on a table can name one audit_truncate.
# On Citus (audit.citus_row_change) the table's oid, schema and name come before the key
# columns; the shards' copies of the triggers (named audit_citus_insert_<shard id> ..., on a
# coordinator that holds shards) are not tables of the application.
_TRACKED = f"""
select n.nspname, c.relname, t.tgargs,
    p.proname in ('record_row_change', 'citus_row_change'),
    exists (
        select from pg_catalog.pg_trigger m
        where m.tgrelid = t.tgrelid and m.tgname = 'audit_truncate'
            and m.tgfoid = to_regprocedure('audit.record_truncate()')
            and pg_catalog.obj_description(m.oid, 'pg_trigger') = '{TRACKED_BY_MIGRATION}'
    ),
    p.proname = 'citus_row_change'
from pg_catalog.pg_trigger t
join pg_catalog.pg_class c on c.oid = t.tgrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_proc p on p.oid = t.tgfoid
join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
where pn.nspname = 'audit' and p.proname = 'record_row_change'
    or pn.nspname = 'audit' and p.proname = 'citus_row_change'
        and t.tgname in ('audit_citus_insert', 'audit_citus_delete', 'audit_citus_update')
    or t.tgfoid in ({_REFERENCE_FUNCTIONS})
"""

_VERSION = "select max(version) from audit.schema_version"

# The tables whose trail is complete (audit schema version 4): a finished snapshot, or
# tracked while empty. A snapshot under way (audit.snapshot_progress) is not complete.
_COMPLETE = """
select n.nspname, c.relname
from audit.trail_complete_since m
join pg_catalog.pg_class c on c.oid = m.table_oid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
"""


@dataclass(frozen=True)
class AuditState:
    """What is installed, and which tables are tracked with which key columns."""

    installed: bool = False
    version: int | None = None
    tracked: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: Schemas that belong to extensions (TimescaleDB's internal ones hold audit chunks).
    extension_schemas: frozenset[str] = frozenset()
    #: Tracked tables whose tracking a migration enabled (op.enable_tracking()).
    marked: frozenset[tuple[str, str]] = frozenset()
    #: An install of the reference design (supa_audit / hyper_audit) is there to adopt.
    reference: bool = False
    #: The tables its triggers (audit_i_u_d / audit_t) track.
    reference_tracked: frozenset[tuple[str, str]] = frozenset()
    #: The options of tracked tables that have some (audit schema version 2).
    options: dict[tuple[str, str], TrackingOptions] = field(default_factory=dict)
    #: Tables whose trail rebuilds them (audit.trail_complete_since; version 4): a
    #: snapshot asked for by a flag is taken only for a tracked table not among them.
    complete: frozenset[tuple[str, str]] = frozenset()

    def is_tracked(self, schema: str, table_name: str) -> bool:
        return (schema, table_name) in self.tracked

    def options_of(self, schema: str, table_name: str) -> TrackingOptions:
        return self.options.get((schema, table_name), NO_OPTIONS)


def _arguments(tgargs: bytes, citus: bool = False) -> list[str]:
    """The trigger arguments; on Citus without the table's oid, schema and name first."""
    args = [arg.decode("utf-8") for arg in bytes(tgargs).split(b"\x00")[:-1]]
    return args[3:] if citus else args


def _key_columns(tgargs: bytes, citus: bool = False) -> tuple[str, ...]:
    """The key columns: the trigger arguments before the empty one that starts the options."""
    args = _arguments(tgargs, citus)
    return tuple(args[: args.index("")] if "" in args else args)


def _options(tgargs: bytes, citus: bool = False) -> TrackingOptions:
    """The options after the empty argument: 'exclude=<column>' ..., 'skip_unchanged',
    'on_replica'."""
    args = _arguments(tgargs, citus)
    if "" not in args:
        return NO_OPTIONS
    rest = args[args.index("") + 1 :]
    return TrackingOptions(
        exclude=tuple(sorted(a[len("exclude=") :] for a in rest if a.startswith("exclude="))),
        skip_unchanged="skip_unchanged" in rest,
        on_replica="on_replica" in rest,
    )


def read_audit_state(connection: Connection) -> AuditState:
    """What is installed and what is tracked: at most four catalog queries."""
    installed, has_version, extension_schemas, reference, has_complete = connection.exec_driver_sql(
        _INSTALLED
    ).one()
    version = connection.exec_driver_sql(_VERSION).scalar() if has_version else None
    tracked: dict[tuple[str, str], tuple[str, ...]] = {}
    options: dict[tuple[str, str], TrackingOptions] = {}
    marked: set[tuple[str, str]] = set()
    reference_tracked: set[tuple[str, str]] = set()
    for schema, table, args, ours, by_migration, citus in connection.exec_driver_sql(_TRACKED):
        if not ours:
            reference_tracked.add((schema, table))
            continue
        tracked[(schema, table)] = _key_columns(args, citus)
        if _options(args, citus) != NO_OPTIONS:
            options[(schema, table)] = _options(args, citus)
        if by_migration:
            marked.add((schema, table))
    complete: set[tuple[str, str]] = set()
    if installed and has_complete:
        complete = {(schema, table) for schema, table in connection.exec_driver_sql(_COMPLETE)}
    return AuditState(
        complete=frozenset(complete),
        installed=bool(installed),
        version=version,
        tracked=tracked,
        extension_schemas=frozenset(extension_schemas),
        marked=frozenset(marked),
        reference=bool(reference),
        reference_tracked=frozenset(reference_tracked),
        options=options,
    )


# -- the audit table's layout ----------------------------------------------------------

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
     where (proc_schema = 'audit' and proc_name = 'apply_retention')
        or (proc_name = 'policy_retention'
            and hypertable_schema = 'audit' and hypertable_name = 'record_version')
     order by proc_schema = 'audit' desc, job_id
     limit 1)
"""


_CITUS = """
select
    exists (select from pg_catalog.pg_extension e where e.extname = 'citus'),
    pg_catalog.to_regprocedure('audit.citus_kind(regclass)') is not null
        and pg_catalog.to_regclass('audit.record_version') is not null
"""


def read_citus(connection: Connection) -> tuple[bool, bool]:
    """Whether the citus extension is installed, and whether audit.record_version is a
    distributed table (op.distribute_audit()): at most two catalog queries."""
    installed, can_ask = connection.execute(text(_CITUS)).one()
    if not installed or not can_ask:
        return bool(installed), False
    kind = connection.execute(
        text("select audit.citus_kind(cast('audit.record_version' as regclass))")
    ).scalar()
    return True, kind == "distributed"


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
