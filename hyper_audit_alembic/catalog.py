"""The audit state of a database, read in a constant number of catalog queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

_INSTALLED = """
select
    to_regprocedure('audit.enable_tracking(regclass)') is not null,
    to_regclass('audit.schema_version') is not null,
    array(
        select n.nspname::text
        from pg_catalog.pg_namespace n
        join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_namespace'::regclass
            and d.objid = n.oid and d.deptype = 'e'
    )
"""

_TRACKED = """
select n.nspname, c.relname, t.tgargs
from pg_catalog.pg_trigger t
join pg_catalog.pg_class c on c.oid = t.tgrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_proc p on p.oid = t.tgfoid
join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
where pn.nspname = 'audit' and p.proname = 'record_row_change'
"""

_VERSION = "select max(version) from audit.schema_version"


@dataclass(frozen=True)
class AuditState:
    """What is installed, and which tables are tracked with which key columns."""

    installed: bool = False
    version: int | None = None
    tracked: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: Schemas that belong to extensions (TimescaleDB's internal ones hold audit chunks).
    extension_schemas: frozenset[str] = frozenset()

    def is_tracked(self, schema: str, table_name: str) -> bool:
        return (schema, table_name) in self.tracked


def _key_columns(tgargs: bytes) -> tuple[str, ...]:
    return tuple(arg.decode("utf-8") for arg in bytes(tgargs).split(b"\x00")[:-1])


def read_audit_state(connection: Connection) -> AuditState:
    installed, has_version, extension_schemas = connection.exec_driver_sql(_INSTALLED).one()
    version = connection.exec_driver_sql(_VERSION).scalar() if has_version else None
    tracked = {
        (schema, table): _key_columns(args)
        for schema, table, args in connection.exec_driver_sql(_TRACKED)
    }
    return AuditState(
        installed=bool(installed),
        version=version,
        tracked=tracked,
        extension_schemas=frozenset(extension_schemas),
    )
