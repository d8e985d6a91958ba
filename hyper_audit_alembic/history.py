"""Reading the audit trail from an application: record ids, one record's history, a table's.

This module stands apart from Alembic: an application imports it (through the package's
``history``, ``table_history``, ``as_of``, ``record_id`` and ``RecordVersion``) without
loading any migration code.

How a record is found
---------------------
The triggers give each row a stable record id: the UUID v5 of the table's oid and the
primary-key values (:func:`record_id`). One record's history is the audit rows whose
``record_id`` or ``old_record_id`` is that id, oldest first (``ts``, then ``id``), plus:

* primary-key changes: an UPDATE whose ``record_id`` differs from its ``old_record_id``
  moved the record from one id to another. Walking backwards, the rows of the previous id
  before that UPDATE belong to the record; walking forwards, the rows of the next id after
  it do too (and so on, in both directions).
* backup and restore: ``pg_dump`` / ``pg_restore`` (or any re-creation of the table) gives
  the table a new oid, so the same record gets a new record id while its old rows keep the
  old one. The lookup therefore searches every table oid the audit table has recorded
  under the table's current schema and name (found with one indexed query: a skip scan of
  the ``table_oid`` index, then the first and the last audit row of each oid in that
  index), and computes the record id for each. When such an old oid now belongs to
  another relation of the database (a restore into a new cluster can hand the same oid
  out again), only its rows recorded under the table's schema and name are taken; and
  rows of the table's current oid recorded under the name of another existing relation
  are left to that relation (an older table that had the same oid).

Known limits: rows written under an old oid are found only when that oid's first or last
audit row carries the table's current schema and name (a table renamed after its last
change before a dump, or renamed after the restore, keeps its old rows apart); and a
table renamed while another relation took its old name loses its rows from before the
rename to that relation. Record ids are computed with the table's current key columns:
rows written before the primary key was changed to other columns are not found by key.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, Session, mapped_column

from .quoting import qualified_name

__all__ = [
    "RECORD_ID_NAMESPACE",
    "Operation",
    "RecordVersion",
    "as_of",
    "context_history",
    "history",
    "key_text",
    "parse_table_name",
    "record_id",
    "render_versions",
    "table_history",
    "transaction_history",
    "version_as_json",
]

#: The UUID namespace of the record ids (the same as supa_audit's and hyper_audit's); the
#: audit SQL (sql/functions/to_record_id.sql) has the same, which a test checks.
RECORD_ID_NAMESPACE = uuid.UUID("fd62bc3d-8d6e-43c2-919c-802ba3762271")


# --------------------------------------------------------------------------------------
# Record ids in Python


def key_text(value: object) -> str:
    """A primary-key value as the audit trigger sees it: ``to_jsonb(row) ->> column``.

    Supported, and tested against PostgreSQL:

    * ``str`` (text, varchar, char, enum labels, citext, ...) as is;
    * ``int`` (smallint, integer, bigint): its decimal digits;
    * ``uuid.UUID``: the lowercase hyphenated form;
    * ``bool``: ``true`` / ``false``;
    * ``decimal.Decimal`` (numeric): without exponent and with the scale the column
      stores, so pass ``Decimal("1.50")`` for a ``numeric(10, 2)`` key of 1.5 (the
      history functions do that themselves for a model's ``Numeric(scale=...)`` column);
    * ``datetime.date``, naive ``datetime.datetime`` (timestamp) and naive
      ``datetime.time``: ISO 8601 with a ``T``, trailing zeros of the fraction dropped;
    * aware ``datetime.datetime`` (timestamptz): converted to UTC and written with
      ``+00:00``, as the audit triggers render timestamptz whatever the writer's
      ``TimeZone`` (audit schema version 3 on; rows an earlier version wrote in a session
      whose time zone was not UTC have ids of that offset's text: pass it as a ``str``);
    * ``float`` (double precision): its shortest exact decimal text, without exponent
      (``149.99``, ``100``, ``0.00001``), as ``extra_float_digits = 1`` gives it through
      jsonb; ``NaN``, ``Infinity``, ``-Infinity``;
    * ``bytes`` (bytea): ``\\x`` and lowercase hex.

    Any other key type (real, interval, arrays, ...) can be passed as the exact text
    PostgreSQL produces for it under the canonical settings (README, "Canonical forms"),
    as a ``str``.
    """
    if isinstance(value, enum.Enum):
        raise TypeError(
            f"record id: pass the enum label the database stores as a str, not {value!r}"
        )
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else str(value)
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, dt.datetime):
        if value.utcoffset() is not None:
            value = value.astimezone(dt.timezone.utc)
            return _trim_fraction(value.replace(tzinfo=None).isoformat()) + "+00:00"
        return _trim_fraction(value.isoformat())
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        if value.utcoffset() is not None:
            raise TypeError("record id: time with time zone keys are not supported")
        return _trim_fraction(value.isoformat())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if value is None:
        raise ValueError("record id: a primary-key value cannot be None")
    raise TypeError(
        f"record id: key values of type {type(value).__name__} are not supported; "
        "pass the text PostgreSQL writes for the value (row_to_json(...) ->> column) as a str"
    )


def _float_text(value: float) -> str:
    """A float8 key as ``to_jsonb()`` gives it under ``extra_float_digits = 1``: the shortest
    text that reads back as the same double (Python's ``repr`` has the same digits), read as
    a jsonb number, so written without exponent and without a trailing ``.0``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    text = format(Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


def _trim_fraction(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def record_id(table_oid: int, *key_values: object) -> uuid.UUID:
    """The record id the database gives a row: ``audit.to_record_id`` in Python.

    ``key_values`` are the primary-key values in column-number order (the order of the
    columns in ``CREATE TABLE``), of the types :func:`key_text` lists. The id is the UUID
    v5, in namespace :data:`RECORD_ID_NAMESPACE`, of the jsonb text form of
    ``["<table oid>", "<value 1>", ...]``.

    >>> record_id(16439, 1)
    UUID('57ca384e-f24c-5af5-b361-a057aeac506c')
    """
    if not key_values:
        raise ValueError("record id: at least one primary-key value is needed")
    texts = [str(int(table_oid)), *(key_text(value) for value in key_values)]
    # jsonb's text form: ", " between elements, non-ASCII characters as they are, the
    # same escapes as Python's json for quotes, backslashes and control characters.
    return uuid.uuid5(RECORD_ID_NAMESPACE, json.dumps(texts, ensure_ascii=False))


# --------------------------------------------------------------------------------------
# The ORM class


class Operation(str, enum.Enum):
    """The ``audit.operation`` labels; members compare equal to their strings."""

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    TRUNCATE = "TRUNCATE"

    def __str__(self) -> str:
        return self.value


class XID8(sa.types.UserDefinedType[int]):
    """PostgreSQL's ``xid8`` (a 64-bit transaction id), read and compared as a Python int.

    Drivers return it as text or as an int; values are bound as text and cast.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        return lambda value: None if value is None else str(int(value))

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(sa.cast(bindvalue, sa.Text), self)

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        return lambda value: None if value is None else int(value)


class AuditBase(DeclarativeBase):
    """The registry and MetaData of the audit classes: never the user's.

    Autogenerate compares only the user's ``target_metadata``, so ``audit.record_version``
    never shows up in a user's migrations.
    """

    metadata = sa.MetaData()


class RecordVersion(AuditBase):
    """One row of ``audit.record_version``: one change of one record (or a TRUNCATE).

    Usable with the application's own ``Session``; reading it needs SELECT on
    ``audit.record_version`` (and USAGE on schema ``audit``).

    It maps audit schema version 2 and later (version 3 adds no column): ``actor``,
    ``context`` and ``transaction_id`` exist from version 2 on, so a database still at
    version 1 needs its audit schema upgraded (``op.upgrade_audit()``) before this class
    can read it.
    Rows recorded before that upgrade have None in these three.
    """

    __tablename__ = "record_version"
    __table_args__ = {"schema": "audit"}

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    record_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    old_record_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    op: Mapped[Operation] = mapped_column(
        postgresql.ENUM(
            Operation,
            name="operation",
            schema="audit",
            create_type=False,
            values_callable=lambda members: [member.value for member in members],
        )
    )
    ts: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    table_oid: Mapped[int] = mapped_column(postgresql.OID)
    table_schema: Mapped[str] = mapped_column(sa.String)
    table_name: Mapped[str] = mapped_column(sa.String)
    record: Mapped[dict[str, Any] | None] = mapped_column(postgresql.JSONB)
    old_record: Mapped[dict[str, Any] | None] = mapped_column(postgresql.JSONB)
    #: Who made the change: the application's actor (``audit_context(actor=...)``), else
    #: the database role the session acted as.
    actor: Mapped[str | None] = mapped_column(sa.Text)
    #: Why: the application's context for the transaction (``audit_context(**context)``).
    context: Mapped[dict[str, Any] | None] = mapped_column(postgresql.JSONB)
    #: The writing transaction's id (``pg_current_xact_id()``), shared by its rows.
    transaction_id: Mapped[int | None] = mapped_column(XID8)

    @property
    def values(self) -> dict[str, Any] | None:
        """The row after the change, or before it for a DELETE (None for a TRUNCATE)."""
        return self.record if self.record is not None else self.old_record

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        """``{column: (before, after)}`` for the columns this change set or altered.

        An INSERT lists every column with ``before`` None, a DELETE every column with
        ``after`` None, an UPDATE only the columns whose value changed.
        """
        old = self.old_record or {}
        new = self.record or {}
        names = list(new) + [name for name in old if name not in new]
        if self.op == Operation.UPDATE:
            names = [n for n in names if n not in old or n not in new or old[n] != new[n]]
        return {name: (old.get(name), new.get(name)) for name in names}

    def __repr__(self) -> str:
        return (
            f"<RecordVersion {self.id} {self.op} {self.table_schema}.{self.table_name} "
            f"at {self.ts}>"
        )


# --------------------------------------------------------------------------------------
# Which table, which oids


@dataclass(frozen=True)
class _Table:
    """A table as the caller named it, with its key columns in the caller's order."""

    schema: str | None
    name: str
    key_columns: tuple[str, ...] | None  # None: take the database's key
    attribute_keys: Mapping[str, str]  # mapped attribute key -> column name
    numeric_scales: Mapping[str, int]  # column name -> scale, for Numeric keys
    column_order: Mapping[str, int]  # column name -> position, when the table is gone


@dataclass(frozen=True)
class _Target:
    """A table resolved against the database, with the oids its history is under."""

    schema: str
    name: str
    current_oid: int | None
    key_columns: tuple[str, ...]  # column-number order, as the triggers use them
    columns: tuple[str, ...]  # all columns, in column-number order (when known)
    own_oids: tuple[int, ...]  # every row under these oids is this table's
    shared_oids: tuple[int, ...]  # only the rows recorded under schema.name are

    @property
    def oids(self) -> tuple[int, ...]:
        return self.own_oids + self.shared_oids

    def row_filter(self) -> sa.ColumnElement[bool]:
        """The audit rows of this table, by oid (the ``table_oid`` index).

        Rows of an oid that is (now) another relation's count only under this table's
        name; rows of the current oid count unless recorded under the name of another
        relation that exists now (an older table that had the same oid).
        """
        rv = RecordVersion
        ours = sa.and_(rv.table_schema == self.schema, rv.table_name == self.name)
        conditions: list[sa.ColumnElement[bool]] = []
        if self.current_oid is not None:
            other_relation = (
                sa.select(sa.literal(1))
                .select_from(
                    _PG_CLASS.join(_PG_NAMESPACE, _PG_NAMESPACE.c.oid == _PG_CLASS.c.relnamespace)
                )
                .where(_PG_CLASS.c.relname == rv.table_name)
                .where(_PG_NAMESPACE.c.nspname == rv.table_schema)
                .exists()
            )
            conditions.append(
                sa.and_(rv.table_oid == self.current_oid, sa.or_(ours, ~other_relation))
            )
        old = [oid for oid in self.own_oids if oid != self.current_oid]
        if old:
            conditions.append(rv.table_oid.in_(old))
        if self.shared_oids:
            conditions.append(sa.and_(rv.table_oid.in_(self.shared_oids), ours))
        return sa.or_(*conditions) if conditions else sa.false()


_PG_CLASS = sa.table(
    "pg_class",
    sa.column("oid"),
    sa.column("relname"),
    sa.column("relnamespace"),
    schema="pg_catalog",
)
_PG_NAMESPACE = sa.table(
    "pg_namespace", sa.column("oid"), sa.column("nspname"), schema="pg_catalog"
)

_RESOLVE = sa.text(
    """
    select c.oid::bigint, n.nspname::text, c.relname::text,
        (
            select array_agg(a.attname::text order by a.attnum)
            from pg_catalog.pg_index i
            join pg_catalog.pg_attribute a
                on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
            where i.indrelid = c.oid and i.indisprimary
        ),
        (
            select array_agg(a.attname::text order by a.attnum)
            from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        )
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = pg_catalog.to_regclass(:qualified)
    """
)

# Every oid in the audit table, by a skip scan of the table_oid index (one index probe
# per oid), with the names on its first and its last audit row in that index (the range
# condition keeps the backward scan: with "= oid" the planner drops the ORDER BY).
_OIDS = sa.text(
    """
    with recursive oids (table_oid) as (
        select min(table_oid) from audit.record_version
        union all
        select (
            select min(r.table_oid) from audit.record_version r
            where r.table_oid > oids.table_oid
        )
        from oids
        where oids.table_oid is not null
    )
    select
        o.table_oid::bigint,
        exists (select from pg_catalog.pg_class c where c.oid = o.table_oid),
        first_row.table_schema::text, first_row.table_name::text,
        last_row.table_schema::text, last_row.table_name::text
    from oids o
    cross join lateral (
        select r.table_schema, r.table_name from audit.record_version r
        where r.table_oid >= o.table_oid and r.table_oid <= o.table_oid
        order by r.table_oid
        limit 1
    ) first_row
    cross join lateral (
        select r.table_schema, r.table_name from audit.record_version r
        where r.table_oid >= o.table_oid and r.table_oid <= o.table_oid
        order by r.table_oid desc
        limit 1
    ) last_row
    where o.table_oid is not null
    """
)


def _describe_model(model: object) -> _Table:
    """A mapped class, a mapper, a Core ``Table`` or a ``"schema.table"`` string."""
    if isinstance(model, str):
        schema, name = parse_table_name(model)
        return _Table(schema, name, None, {}, {}, {})
    if isinstance(model, sa.Table):
        return _from_table(model, [c.name for c in model.primary_key.columns], {})
    mapper = model if isinstance(model, Mapper) else sa.inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise TypeError(
            f"history: {model!r} is not a mapped class, a Table or a table name; pass "
            "history(session, obj) for an object"
        )
    table = mapper.local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"history: {mapper.class_.__name__} is not mapped to a table")
    table_key = list(table.primary_key.columns)
    names: list[str] = []
    for position, column in enumerate(mapper.primary_key):
        if column.table is table:
            names.append(column.name)
        elif len(table_key) == len(mapper.primary_key):  # joined inheritance
            names.append(table_key[position].name)
        else:
            raise TypeError(f"history: cannot match the key of {mapper.class_.__name__}")
    attributes = {
        prop.key: prop.columns[0].name
        for prop in mapper.column_attrs
        if prop.columns
        and isinstance(prop.columns[0], sa.Column)
        and prop.columns[0].table is table
    }
    return _from_table(table, names, attributes)


def _from_table(table: sa.Table, key: list[str], attributes: Mapping[str, str]) -> _Table:
    scales = {
        column.name: column.type.scale
        for column in table.columns
        if isinstance(column.type, sa.Numeric)
        and not isinstance(column.type, sa.Float)
        and column.type.scale is not None
    }
    order = {column.name: position for position, column in enumerate(table.columns)}
    return _Table(table.schema, table.name, tuple(key), attributes, scales, order)


def parse_table_name(text: str) -> tuple[str | None, str]:
    """``'schema.table'``, ``'"My Schema"."My Table"'`` or ``'table'``, as PostgreSQL reads it.

    Unquoted parts are folded to lower case, quoted ones kept (``""`` is a quote).
    """
    parts: list[str] = []
    i = 0
    while True:
        if i < len(text) and text[i] == '"':
            part = []
            i += 1
            while True:
                end = text.find('"', i)
                if end < 0:
                    raise ValueError(f"unterminated quoted name in {text!r}")
                part.append(text[i:end])
                if text.startswith('""', end):
                    part.append('"')
                    i = end + 2
                else:
                    i = end + 1
                    break
            parts.append("".join(part))
        else:
            end = text.find(".", i)
            end = len(text) if end < 0 else end
            raw = text[i:end].strip()
            if not raw or '"' in raw:
                raise ValueError(f"not a table name: {text!r}")
            parts.append("".join(c.lower() if "A" <= c <= "Z" else c for c in raw))
            i = end
        if i == len(text):
            break
        if text[i] != ".":
            raise ValueError(f"not a table name: {text!r}")
        i += 1
    if len(parts) > 2:
        raise ValueError(f"not a table name (schema.table at most): {text!r}")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _resolve(session: Session, table: _Table) -> _Target:
    """The table's oid, key columns and every oid its audit rows are under."""
    found = session.execute(
        _RESOLVE, {"qualified": qualified_name(table.name, table.schema)}
    ).one_or_none()
    if found is not None:
        current_oid, schema, name, key, all_columns = found
        key_columns = tuple(key or ())
        columns = tuple(all_columns or ())
    else:
        current_oid = None
        columns = tuple(sorted(table.column_order, key=table.column_order.__getitem__))
        name = table.name
        schema = table.schema or session.execute(sa.text("select current_schema()")).scalar()
        if table.key_columns is None:
            key_columns = ()
        else:  # the table is gone: column order as the model declares it
            key_columns = tuple(
                sorted(table.key_columns, key=lambda c: table.column_order.get(c, 0))
            )
    own: list[int] = [] if current_oid is None else [current_oid]
    shared: list[int] = []
    for oid, live, first_schema, first_name, last_schema, last_name in session.execute(_OIDS):
        if oid == current_oid:
            continue
        if (first_schema, first_name) == (schema, name) or (last_schema, last_name) == (
            schema,
            name,
        ):
            (shared if live else own).append(oid)
    return _Target(str(schema), name, current_oid, key_columns, columns, tuple(own), tuple(shared))


def _key_values(table: _Table, target: _Target, pk: object) -> tuple[object, ...]:
    """The caller's key (scalar, tuple or dict) in the database's key-column order."""
    caller_order = table.key_columns if table.key_columns is not None else target.key_columns
    if isinstance(pk, Mapping):
        by_column = {table.attribute_keys.get(k, k): v for k, v in pk.items()}
        wanted = set(caller_order or target.key_columns)
        if not wanted:
            raise ValueError(
                f"history: {target.schema}.{target.name} does not exist, so its key columns "
                "are unknown: pass the key as a value or a tuple in column order"
            )
        if set(by_column) != wanted:
            raise ValueError(
                f"history: the key of {target.schema}.{target.name} is "
                f"({', '.join(sorted(wanted))}), got ({', '.join(sorted(map(str, pk)))})"
            )
    else:
        values = tuple(pk) if isinstance(pk, (tuple, list)) else (pk,)
        if not caller_order:
            caller_order = tuple(f"#{i}" for i in range(len(values)))
        if len(values) != len(caller_order):
            raise ValueError(
                f"history: the key of {target.schema}.{target.name} has {len(caller_order)} "
                f"column(s) ({', '.join(caller_order)}), got {len(values)} value(s)"
            )
        by_column = dict(zip(caller_order, values, strict=True))
    db_order = target.key_columns or tuple(by_column)
    if set(db_order) != set(by_column):
        raise ValueError(
            f"history: the primary key of {target.schema}.{target.name} in the database is "
            f"({', '.join(db_order)}), the model's is ({', '.join(by_column)})"
        )
    return tuple(_normalize(by_column[c], table.numeric_scales.get(c)) for c in db_order)


def _normalize(value: object, scale: int | None) -> object:
    if scale is not None and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return Decimal(value).quantize(Decimal(1).scaleb(-scale))
    return value


# --------------------------------------------------------------------------------------
# Reading


_Position = tuple[dt.datetime, int]


def _position(row: RecordVersion) -> _Position:
    return (row.ts, row.id)


def _versions(session: Session, target: _Target, key: Sequence[object]) -> list[RecordVersion]:
    """The rows of one record, following its primary-key changes both ways."""
    start = {record_id(oid, *key) for oid in target.oids}
    # (id, direction, bound): which rows of an id belong to the record. direction 0: all;
    # -1: those before bound (the record's past under an earlier key); +1: after it.
    tasks: list[tuple[uuid.UUID, int, _Position | None]] = [(i, 0, None) for i in start]
    seen_tasks: set[tuple[uuid.UUID, int, _Position | None]] = set()
    rows_by_id: dict[uuid.UUID, list[RecordVersion]] = {}
    taken: dict[int, RecordVersion] = {}
    rv = RecordVersion
    while tasks:
        tasks = [t for t in tasks if t not in seen_tasks]
        seen_tasks.update(tasks)
        wanted = {t[0] for t in tasks} - set(rows_by_id)
        if wanted:
            for i in wanted:
                rows_by_id[i] = []
            for row in session.scalars(
                sa.select(rv)
                .where(sa.or_(rv.record_id.in_(wanted), rv.old_record_id.in_(wanted)))
                .where(target.row_filter())
            ):
                for found in {row.record_id, row.old_record_id}:
                    if found is not None and found in wanted:
                        rows_by_id[found].append(row)
        following: list[tuple[uuid.UUID, int, _Position | None]] = []
        for ident, direction, bound in tasks:
            for row in rows_by_id[ident]:
                where = _position(row)
                if bound is not None and (
                    (direction < 0 and where >= bound) or (direction > 0 and where <= bound)
                ):
                    continue
                taken[row.id] = row
                if row.record_id is None or row.old_record_id is None:
                    continue
                if row.record_id == row.old_record_id:
                    continue
                if row.record_id == ident and direction <= 0:  # arrived from another key
                    following.append((row.old_record_id, -1, where))
                if row.old_record_id == ident and direction >= 0:  # left for another key
                    following.append((row.record_id, +1, where))
        tasks = following
    return sorted(taken.values(), key=_position)


def _identity(obj: object) -> tuple[object, tuple[object, ...]]:
    state = sa.inspect(obj, raiseerr=False)
    mapper = getattr(state, "mapper", None)
    if state is None or not isinstance(mapper, Mapper) or not hasattr(state, "identity"):
        raise TypeError(
            f"history: {obj!r} is not a mapped object; pass history(session, Model, pk)"
        )
    identity = state.identity
    if identity is None:
        identity = tuple(mapper.primary_key_from_instance(obj))
    if any(value is None for value in identity):
        raise ValueError(f"history: {obj!r} has no primary key yet")
    return mapper, tuple(identity)


_MISSING: Any = object()


def history(session: Session, model_or_obj: object, pk: object = _MISSING) -> list[RecordVersion]:
    """One record's audit rows, oldest first (by ``ts``, then ``id``).

    ``history(session, obj)`` for a mapped object (also one that has been deleted), or
    ``history(session, Model, pk)`` where ``Model`` is a mapped class, a Core ``Table`` or
    a ``"schema.table"`` name and ``pk`` a value, a tuple (in the order
    ``Session.get`` takes: the mapper's primary key, or the database's key columns for a
    name) or a dict by column or attribute name. Follows the record through changes of
    its primary key and through backup and restore (see the module documentation).
    TRUNCATE rows carry no record id and are not part of a record's history.

    With asyncio: ``await async_session.run_sync(history, Model, pk)``.
    """
    return _lookup(session, model_or_obj, pk)[1]


def _lookup(
    session: Session, model_or_obj: object, pk: object = _MISSING, *, read_as_sql: bool = False
) -> tuple[_Target, list[RecordVersion]]:
    """The table resolved and the record's versions.

    ``read_as_sql``: the key values are strings to read as the columns' types, the way
    SQL reads a literal (the command line: ``1.5`` finds a ``numeric(10, 2)`` key 1.50).
    """
    if pk is _MISSING:
        model, pk = _identity(model_or_obj)
    else:
        model = model_or_obj
    table = _describe_model(model)
    target = _resolve(session, table)
    key = _key_values(table, target, pk)
    if read_as_sql and target.current_oid is not None and target.key_columns:
        key = _read_as_column_types(session, target, key)
    return target, _versions(session, target, key)


def _read_as_column_types(
    session: Session, target: _Target, key: Sequence[object]
) -> tuple[str, ...]:
    """The key values as the trigger would write them: through the table's row type."""
    row_type = qualified_name(target.name, target.schema)
    texts = session.execute(
        sa.text(
            "select r ->> k.name from ("
            f" select to_jsonb(jsonb_populate_record(cast(null as {row_type}),"
            " cast(:row as jsonb))) as r"
            ") as s, unnest(cast(:names as text[])) with ordinality as k (name, n) order by k.n"
        ),
        {
            "row": json.dumps(dict(zip(target.key_columns, map(key_text, key), strict=True))),
            "names": list(target.key_columns),
        },
    ).scalars()
    return tuple(texts)


def table_history(
    session: Session,
    model: object,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[RecordVersion]:
    """A table's audit rows (TRUNCATEs included), oldest first, with ``since <= ts < until``.

    Selected by ``table_oid`` (indexed), under every oid the table has had (see the
    module documentation). ``ts`` is the time the writing transaction started.
    """
    target = _resolve(session, _describe_model(model))
    if not target.oids:
        return []
    rv = RecordVersion
    query = sa.select(rv).where(target.row_filter())
    if since is not None:
        query = query.where(rv.ts >= since)
    if until is not None:
        query = query.where(rv.ts < until)
    return list(session.scalars(query.order_by(rv.ts, rv.id)))


def as_of(session: Session, model: object, pk: object, when: dt.datetime) -> dict[str, Any] | None:
    """The record as it was at ``when``: its recorded column values, or None.

    None when the record did not exist then: not inserted yet, deleted, or removed by a
    TRUNCATE of its table. Values are as the audit row stores them (JSON: numbers,
    strings, timestamps as ISO text). Changes count from the start of their transaction
    (``ts``). Only changes made while the table was tracked are known: a record that
    existed before tracking began is None until its first recorded change.
    """
    if when.utcoffset() is None:
        raise ValueError("as_of: pass a timezone-aware datetime (audit times are timestamptz)")
    target, versions = _lookup(session, model, pk)
    last = None
    for version in versions:
        if version.ts > when:
            break
        last = version
    if last is None or last.record is None:
        return None
    rv = RecordVersion
    truncated = session.scalar(
        sa.select(sa.literal(True))
        .where(target.row_filter())
        .where(rv.op == Operation.TRUNCATE)
        .where(rv.ts <= when)
        .where(sa.tuple_(rv.ts, rv.id) > sa.tuple_(sa.literal(last.ts), sa.literal(last.id)))
        .limit(1)
    )
    return None if truncated else dict(last.record)


def transaction_history(session: Session, transaction_id: int) -> list[RecordVersion]:
    """Every audit row one transaction wrote, in the order it wrote them.

    ``transaction_id`` as a :class:`RecordVersion` carries it (found by the
    ``record_version_transaction_id`` index).
    """
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, int):
        raise TypeError(
            f"transaction_history: transaction_id must be an int (a RecordVersion's "
            f"transaction_id), got {type(transaction_id).__name__} {transaction_id!r}"
        )
    if transaction_id < 0:
        raise ValueError(
            f"transaction_history: transaction_id must be 0 or more, got {transaction_id}"
        )
    rv = RecordVersion
    query = sa.select(rv).where(rv.transaction_id == transaction_id)
    return list(session.scalars(query.order_by(rv.id)))


def _check_context(context: object) -> None:
    """A context to look up: a non-empty mapping of names to JSON values."""
    if not isinstance(context, Mapping):
        raise TypeError(
            f"context_history: context must be a mapping such as {{'request_id': 'r-1'}}, "
            f"got {type(context).__name__} {context!r}"
        )
    if not context:
        raise ValueError(
            "context_history: context is empty (it would match every audit row): "
            "pass at least one name, such as {'request_id': 'r-1'}"
        )
    for name in context:
        if not isinstance(name, str):
            raise TypeError(
                f"context_history: context names must be strings, got "
                f"{type(name).__name__} {name!r}"
            )
    try:
        json.dumps(dict(context))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"context_history: context values must be JSON values (str, int, float, bool, "
            f"None, lists and dicts of them): {error}"
        ) from None


def context_history(
    session: Session,
    context: Mapping[str, Any],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[RecordVersion]:
    """The audit rows whose context holds these values, oldest first (``ts``, then ``id``).

    ``context_history(session, {"request_id": "r-1"})``: one request's changes, over every
    table and transaction. The context is not indexed (an index would cost every audited
    write), so this reads the audit rows with ``since <= ts < until``: give the time range
    where the table is large.
    """
    _check_context(context)
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and not isinstance(bound, dt.datetime):
            raise TypeError(
                f"context_history: {name} must be a datetime, got {type(bound).__name__} {bound!r}"
            )
    rv = RecordVersion
    query = sa.select(rv).where(rv.context.contains(dict(context)))
    if since is not None:
        query = query.where(rv.ts >= since)
    if until is not None:
        query = query.where(rv.ts < until)
    return list(session.scalars(query.order_by(rv.ts, rv.id)))


# --------------------------------------------------------------------------------------
# Showing a history


def version_as_json(version: RecordVersion) -> dict[str, Any]:
    """An audit row as JSON-ready values (ids and times as text)."""
    return {
        "id": version.id,
        "ts": version.ts.isoformat(),
        "op": str(version.op),
        "record_id": None if version.record_id is None else str(version.record_id),
        "old_record_id": None if version.old_record_id is None else str(version.old_record_id),
        "table_oid": version.table_oid,
        "table_schema": version.table_schema,
        "table_name": version.table_name,
        "record": version.record,
        "old_record": version.old_record,
        "actor": version.actor,
        "context": version.context,
        "transaction_id": version.transaction_id,
    }


def render_versions(versions: Sequence[RecordVersion], columns: Sequence[str] = ()) -> str:
    """A history as a text table: ts, op, actor, context, and what changed.

    An INSERT or a DELETE shows the whole row, an UPDATE the columns it changed as
    ``column: before -> after`` (``columns`` sets their order); values and the context
    are written as JSON.
    """
    order = {name: position for position, name in enumerate(columns)}

    def ordered(names: Sequence[str]) -> list[str]:
        return sorted(names, key=lambda n: (order.get(n, len(order)), n))

    def show(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [("ts", "op", "actor", "context", "changes")]
    for version in versions:
        changes = version.changes
        if version.op == Operation.UPDATE:
            text = ", ".join(
                f"{name}: {show(changes[name][0])} -> {show(changes[name][1])}"
                for name in ordered(list(changes))
            )
            text = text or "(no change)"
        else:
            row = version.values or {}
            text = ", ".join(f"{name}={show(row[name])}" for name in ordered(list(row)))
        context = "" if version.context is None else show(version.context)
        lines.append((str(version.ts), str(version.op), version.actor or "", context, text))
    widths = [max(len(line[n]) for line in lines) for n in range(4)]
    return "".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[4]]
        ).rstrip()
        + "\n"
        for line in lines
    )
