"""The table side of a restore or revert: which table, its rows now, and the writes.

Rows travel as jsonb, never as Python values: a recorded row is read into the table's
row type with ``jsonb_populate_record`` (PostgreSQL parses each value as its column's
type, the way it parses a literal), so any column type restores, and two rows are
compared as ``to_jsonb`` renders both in the same session. Identifiers are quoted by
SQLAlchemy's preparer (:mod:`hyper_audit_alembic.sqltext`), never pasted.

Every statement runs on the caller's ``Session``: the restore is written by the caller,
in the caller's transaction, so the audit triggers record it with the actor and context
the caller set (``audit_context``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_mapper

from ...sqltext import qualified_name, quote_identifier
from .plan import RowWrite

Row = dict[str, Any]


@dataclass(frozen=True)
class LiveTable:
    """A table as it is now: its key and the columns a restore can write."""

    oid: int
    schema: str
    name: str
    key: tuple[str, ...]  # column-number order, as the triggers use them
    columns: tuple[str, ...]  # column-number order
    generated: frozenset[str]  # GENERATED ... STORED: never written
    identity_always: frozenset[str]  # GENERATED ALWAYS AS IDENTITY: INSERT overrides

    @property
    def sql(self) -> str:
        return qualified_name(self.name, self.schema)

    @property
    def shown(self) -> str:
        """The name in messages: ``schema.table``, quoted where SQL would need it."""
        return qualified_name(self.name, self.schema)

    def key_of(self, row: Mapping[str, Any]) -> Row:
        return {name: row.get(name) for name in self.key}


_DESCRIBE = sa.text(
    """
    select c.oid::bigint, n.nspname::text, c.relname::text,
        coalesce((
            select array_agg(a.attname::text order by a.attnum)
            from pg_catalog.pg_index i
            join pg_catalog.pg_attribute a
                on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
            where i.indrelid = c.oid and i.indisprimary
        ), '{}'),
        array(
            select a.attname::text from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
            order by a.attnum
        ),
        array(
            select a.attname::text from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                and a.attgenerated <> ''
        ),
        array(
            select a.attname::text from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                and a.attidentity = 'a'
        )
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = :oid
    """
)

_FIND = sa.text(
    """
    select
        (select c.oid::bigint from pg_catalog.pg_class c
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         where c.oid = :oid and n.nspname = :schema and c.relname = :name),
        pg_catalog.to_regclass(:qualified)::oid::bigint,
        (select c.oid::bigint from pg_catalog.pg_class c where c.oid = :oid)
    """
)


def describe(session: Session, oid: int) -> LiveTable:
    found = session.execute(_DESCRIBE, {"oid": oid}).one()
    table_oid, schema, name, key, columns, generated, identity = found
    if not key:
        raise ValueError(
            f"{qualified_name(name, schema)} has no primary key: a row cannot be found again "
            "to restore it (the audit trail needs one too)"
        )
    return LiveTable(
        int(table_oid), schema, name, tuple(key), tuple(columns), frozenset(generated),
        frozenset(identity),
    )  # fmt: skip


def find_table(session: Session, oid: int, schema: str, name: str) -> LiveTable | None:
    """The table an audit row was written for, as it is now; None when it is gone.

    By oid (the table keeps it through renames), unless the oid is now another
    relation's and a table has the recorded name (a dump and restore gave it a new oid).
    """
    same, by_name, by_oid = session.execute(
        _FIND,
        {"oid": oid, "schema": schema, "name": name, "qualified": qualified_name(name, schema)},
    ).one()
    chosen = same or by_name or by_oid
    return None if chosen is None else describe(session, int(chosen))


class NameMapper:
    """Old records under today's column names (``audit.current_names``), cached per call.

    A record written before a column was renamed gets the new name; the values of
    columns dropped since come back apart (``dropped``), as do values of columns the
    table does not have now for another reason (dropped where no change was recorded).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.available = bool(
            session.scalar(
                sa.text(
                    "select pg_catalog.to_regprocedure("
                    "'audit.current_names(oid, jsonb, bigint)') is not null"
                )
            )
        )

    def __call__(
        self, table: LiveTable, table_oid: int, record: Mapping[str, Any] | None, version_id: int
    ) -> tuple[Row | None, Row]:
        if record is None:
            return None, {}
        mapped: Row = dict(record)
        dropped: Row = {}
        if self.available:
            row = self.session.execute(
                sa.text(
                    "select record, dropped from audit.current_names("
                    "cast(:oid as oid), cast(:record as jsonb), :version_id)"
                ),
                {"oid": table_oid, "record": json.dumps(record), "version_id": version_id},
            ).one()
            mapped = dict(row[0])
            dropped = dict(row[1] or {})
        for name in [n for n in mapped if n not in table.columns]:
            dropped[name] = mapped.pop(name)
        return mapped, dropped


def normalized(
    session: Session, table: LiveTable, records: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """Each record read as the table's row type and rendered again, with its own keys only.

    So a recorded value compares with the row now whatever the session's settings (a
    timestamptz recorded in UTC, rendered in the session's time zone like the row's).
    """
    if not records:
        return []
    found = session.execute(
        sa.text(
            "select e.n, to_jsonb(jsonb_populate_record(cast(null as "
            f"{table.sql}), e.value)) from jsonb_array_elements(cast(:records as jsonb))"
            " with ordinality as e (value, n)"
        ),
        {"records": json.dumps(list(map(dict, records)))},
    ).all()
    rendered = {int(n): dict(value) for n, value in found}
    return [
        {name: rendered[position][name] for name in record if name in rendered[position]}
        for position, record in enumerate(records, start=1)
    ]


def rows_now(
    session: Session, table: LiveTable, keys: Sequence[Mapping[str, Any]], *, lock: bool
) -> list[Row | None]:
    """The rows with these keys now (None where there is none), rendered by ``to_jsonb``.

    ``lock``: ``FOR UPDATE``, so nobody changes them between the check and the write.
    """
    if not keys:
        return []
    match = " and ".join(f"t.{quote_identifier(c)} = k.{quote_identifier(c)}" for c in table.key)
    found = session.execute(
        sa.text(
            "select e.n, to_jsonb(t.*) from jsonb_array_elements(cast(:keys as jsonb))"
            " with ordinality as e (value, n)"
            f" cross join lateral jsonb_populate_record(cast(null as {table.sql}), e.value) as k"
            f" join {table.sql} as t on {match}" + (" for update of t" if lock else "")
        ),
        {"keys": json.dumps(list(map(dict, keys)))},
    ).all()
    by_position = {int(n): dict(value) for n, value in found}
    return [by_position.get(position) for position in range(1, len(keys) + 1)]


def differing(now: Mapping[str, Any], wanted: Mapping[str, Any], table: LiveTable) -> list[str]:
    """The columns of ``wanted`` whose value ``now`` does not have, in the table's order."""
    return [
        name
        for name in table.columns
        if name in wanted and (name not in now or now[name] != wanted[name])
    ]


def in_order(row: Mapping[str, Any], table: LiveTable) -> Row:
    """The columns of ``row`` that the table has and can write, in the table's order."""
    return {
        name: row[name] for name in table.columns if name in row and name not in table.generated
    }


def write(session: Session, table: LiveTable, planned: RowWrite) -> None:
    """Carry out one :class:`~.plan.RowWrite`; a row not found is a conflict (raised)."""
    key_match = " and ".join(
        f"t.{quote_identifier(c)} = k.{quote_identifier(c)}" for c in table.key
    )
    populate = f"jsonb_populate_record(cast(null as {table.sql}), cast(:%s as jsonb))"
    params = {"key": json.dumps(dict(planned.key)), "values": json.dumps(dict(planned.values))}
    if planned.action == "INSERT":
        names = [n for n in planned.values if n not in table.generated]
        columns = ", ".join(map(quote_identifier, names))
        override = " overriding system value" if table.identity_always.intersection(names) else ""
        statement = (
            f"insert into {table.sql} as t ({columns}){override}"
            f" select {', '.join('n.' + quote_identifier(n) for n in names)}"
            f" from {populate % 'values'} as n"
        )
    elif planned.action == "UPDATE":
        names = [n for n in planned.values if n not in table.generated]
        sets = ", ".join(f"{quote_identifier(n)} = n.{quote_identifier(n)}" for n in names)
        statement = (
            f"update {table.sql} as t set {sets}"
            f" from {populate % 'values'} as n, {populate % 'key'} as k where {key_match}"
        )
    else:
        statement = f"delete from {table.sql} as t using {populate % 'key'} as k where {key_match}"
    result = session.execute(sa.text(statement), params)
    count = getattr(result, "rowcount", 1)
    if count != 1:
        raise LookupError(f"{planned.action} {table.shown}: {count} rows matched, not 1")


def expire_loaded(session: Session, table: LiveTable) -> None:
    """Expire the session's objects of this table: their rows may have changed under them."""
    for obj in list(session.identity_map.values()):
        mapper = object_mapper(obj)
        for mapped in mapper.tables:
            if (
                isinstance(mapped, sa.Table)
                and mapped.name == table.name
                and (mapped.schema in (None, table.schema))
            ):
                session.expire(obj)
                break
