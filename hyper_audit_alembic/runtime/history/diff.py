"""What each version changed, and who changed one column: diffs read from the audit trail.

:func:`diff` gives one record's versions with their changed columns (old → new),
:func:`net_changes` folds a run of them into one difference, and :func:`column_history`
lists every change of one column across a table, with its actor and context.

Names and types
---------------
Values come back as the column's Python type (``Decimal`` for numeric, ``datetime`` for
timestamptz, ...): each JSON value the trigger stored is read through today's row type of
the table (``jsonb_populate_record``), the way PostgreSQL reads a literal. Column names are
today's: a version written before a column was renamed shows the change under the new
name (audit schema version 4 records renames in ``audit.column_change``; :func:`diff` maps
each version with ``audit.current_names``, :func:`column_history` follows the column's
earlier names across the same records). Values of columns dropped since are not lost:
:func:`diff` returns them in :attr:`VersionDiff.dropped` as stored (JSON), under the name
the column had when it was dropped. ``typed=False`` returns every value as stored (JSON).

A value the column's type today cannot read (a type changed by ``ALTER COLUMN ... TYPE``)
raises the database's error: pass ``typed=False`` to read such a history.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, object_mapper

from ...sqltext import qualified_name
from .model import Operation, RecordVersion
from .resolve import ResolvedTable, describe_model, resolve
from .versions import _MISSING, lookup_record

_Change = tuple[Any, Any]


@dataclass(frozen=True)
class VersionDiff:
    """One audit row of a record with what it changed, under today's column names.

    ``changes`` follows :attr:`RecordVersion.changes`: an INSERT or a SNAPSHOT lists every
    column with ``before`` None, a DELETE every column with ``after`` None, an UPDATE the
    columns whose value changed.
    """

    version: RecordVersion
    #: ``{column: (before, after)}`` under today's names, typed (unless ``typed=False``).
    changes: dict[str, _Change]
    #: The same for columns dropped since this version: values as stored (JSON), under the
    #: name the column had when it was dropped.
    dropped: dict[str, _Change]

    @property
    def id(self) -> int:
        return self.version.id

    @property
    def op(self) -> Operation:
        return self.version.op

    @property
    def ts(self) -> dt.datetime:
        return self.version.ts


@dataclass(frozen=True)
class ColumnChange:
    """One change of one column (see :func:`column_history`)."""

    column: str
    #: The record's primary key, ``{column: value}`` (today's names, typed).
    key: dict[str, Any]
    version_id: int
    ts: dt.datetime
    op: Operation
    old: Any
    new: Any
    actor: str | None
    context: dict[str, Any] | None
    transaction_id: int | None
    record_id: uuid.UUID | None


def _changed(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, op: Operation
) -> list[str]:
    """The names :attr:`RecordVersion.changes` lists, for two records (None: absent)."""
    before = old or {}
    after = new or {}
    names = list(after) + [name for name in before if name not in after]
    if op == Operation.UPDATE:
        names = [n for n in names if n not in before or n not in after or before[n] != after[n]]
    return names


_HAS_CURRENT_NAMES = sa.text(
    "select pg_catalog.to_regprocedure('audit.current_names(oid, jsonb, bigint)') is not null"
)


def _column_types(model: object, target: ResolvedTable) -> dict[str, sa.types.TypeEngine[Any]]:
    """The SQLAlchemy types of the model's columns (NullType for a table given by name)."""
    table: sa.Table | None = None
    if isinstance(model, sa.Table):
        table = model
    elif not isinstance(model, str):
        mapper = sa.inspect(model, raiseerr=False)
        local = getattr(mapper, "local_table", None)
        if isinstance(local, sa.Table):
            table = local
    known = {c.name: c.type for c in table.columns} if table is not None else {}
    return {name: known.get(name, sa.types.NullType()) for name in target.columns}


def diff(
    session: Session,
    model_or_obj: object,
    pk: object = _MISSING,
    *,
    from_version: int | None = None,
    to_version: int | None = None,
    typed: bool = True,
) -> list[VersionDiff]:
    """One record's versions with what each changed, oldest first (as :func:`history`).

    ``diff(session, obj)`` or ``diff(session, Model, pk)`` (the arguments of
    :func:`history`). ``from_version`` / ``to_version``: only the versions whose audit row
    id lies between them (both included). Changes are under today's column names and typed
    (module documentation); :func:`net_changes` folds the list into one difference.
    """
    if pk is _MISSING:
        target, versions = lookup_record(session, model_or_obj)
        model: object = object_mapper(model_or_obj)
    else:
        target, versions = lookup_record(session, model_or_obj, pk)
        model = model_or_obj
    versions = [
        v
        for v in versions
        if (from_version is None or v.id >= from_version)
        and (to_version is None or v.id <= to_version)
    ]
    return diff_versions(session, target, versions, model, typed=typed)


def diff_versions(
    session: Session,
    target: ResolvedTable,
    versions: Sequence[RecordVersion],
    model: object = None,
    *,
    typed: bool = True,
) -> list[VersionDiff]:
    """:func:`diff` of versions already read (by :func:`lookup_record`), in their order.

    ``model``: the mapped class or ``Table`` whose column types read the values (None:
    the driver's types for today's columns of ``target``).
    """
    if not versions:
        return []
    mapped, typed_rows = _read_versions(session, model, target, versions, typed)
    result = []
    for version in versions:
        new, new_dropped, old, old_dropped = mapped[version.id]
        typed_new, typed_old = typed_rows.get(version.id, ({}, {}))
        changes = {
            name: (
                typed_old.get(name, old[name]) if old and name in old else None,
                typed_new.get(name, new[name]) if new and name in new else None,
            )
            for name in _changed(old, new, version.op)
        }
        gone = {
            name: ((old_dropped or {}).get(name), (new_dropped or {}).get(name))
            for name in _changed(old_dropped, new_dropped, version.op)
        }
        result.append(VersionDiff(version, changes, gone))
    return result


_Record = dict[str, Any] | None
_Mapped = tuple[_Record, _Record, _Record, _Record]
_Typed = tuple[dict[str, Any], dict[str, Any]]

_AS_STORED = "(select {rec} as record, cast(null as jsonb) as dropped)"
_RENAMED = "audit.current_names(cast(v.oid as oid), {rec}, v.id)"


def _read_versions(
    session: Session,
    model: object,
    target: ResolvedTable,
    versions: Sequence[RecordVersion],
    typed: bool,
) -> tuple[dict[int, _Mapped], dict[int, _Typed]]:
    """Each version's (record, dropped, old_record, old dropped) under today's names, and
    its records read through today's row type (when ``typed`` and the table exists).

    One query: the audit rows by id (and oid and ts, which every layout's indexes cover),
    renamed by ``audit.current_names`` (audit schema version 4; before it, as stored) and
    typed by ``jsonb_populate_record`` from the stored JSON, never from Python's floats.
    """
    mapping = _RENAMED if session.scalar(_HAS_CURRENT_NAMES) else _AS_STORED
    types = _column_types(model, target) if typed and target.current_oid is not None else {}
    columns = list(types)
    preparer = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
    selected = "".join(
        f", tn.{preparer.quote(name)} as n_{i}, t_o.{preparer.quote(name)} as o_{i}"
        for i, name in enumerate(columns)
    )
    populate = ""
    if columns:
        row_type = qualified_name(target.name, target.schema)
        populate = (
            f" cross join lateral jsonb_populate_record(cast(null as {row_type}), n.record) as tn"
            f" cross join lateral jsonb_populate_record(cast(null as {row_type}), o.record) as t_o"
        )
    statement = sa.text(
        "select v.id, n.record, n.dropped, o.record as old_record, o.dropped as old_dropped"
        f"{selected}"
        " from unnest(cast(:ids as bigint[]), cast(:oids as bigint[]),"
        " cast(:tss as timestamptz[])) as v (id, oid, ts)"
        " join audit.record_version r on r.id = v.id and r.table_oid = v.oid and r.ts = v.ts"
        f" cross join lateral {mapping.format(rec='r.record')} as n"
        f" cross join lateral {mapping.format(rec='r.old_record')} as o"
        f"{populate}"
    ).columns(
        sa.column("id", sa.BigInteger),
        sa.column("record", postgresql.JSONB),
        sa.column("dropped", postgresql.JSONB),
        sa.column("old_record", postgresql.JSONB),
        sa.column("old_dropped", postgresql.JSONB),
        *(
            column
            for i, name in enumerate(columns)
            for column in (sa.column(f"n_{i}", types[name]), sa.column(f"o_{i}", types[name]))
        ),
    )
    mapped: dict[int, _Mapped] = {}
    typed_rows: dict[int, _Typed] = {}
    parameters = {
        "ids": [v.id for v in versions],
        "oids": [v.table_oid for v in versions],
        "tss": [v.ts for v in versions],
    }
    for row in session.execute(statement, parameters):
        mapped[row[0]] = (row[1], row[2], row[3], row[4])
        if columns:
            typed_rows[row[0]] = (
                {name: row[5 + 2 * i] for i, name in enumerate(columns)},
                {name: row[6 + 2 * i] for i, name in enumerate(columns)},
            )
    return mapped, typed_rows


def net_changes(diffs: Sequence[VersionDiff]) -> dict[str, _Change]:
    """The versions' changes folded into one: each column's value before the first change
    in ``diffs`` and after the last, where they differ (``{column: (before, after)}``)."""
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for entry in diffs:
        for name, (before, after) in entry.changes.items():
            first.setdefault(name, before)
            last[name] = after
    return {name: (first[name], last[name]) for name in first if first[name] != last[name]}


_COLUMN_CHANGES = sa.text(
    "select table_oid::bigint, step, kind, old_name::text, new_name::text, before_id"
    " from audit.column_change where table_oid = any (cast(:oids as bigint[]))"
    " order by table_oid, step desc"
)
_HAS_COLUMN_CHANGE = sa.text("select pg_catalog.to_regclass('audit.column_change') is not null")


def _names_over_time(
    session: Session, oids: Sequence[int], column: str
) -> list[tuple[int, int | None, int | None, str]]:
    """Where the column had which name: ``(table_oid, after_id, up_to_id, name)``, the audit
    rows of that oid with ``after_id < id <= up_to_id`` (None: unbounded) recording it as
    ``name``. Walks the table's renames back from today (``audit.column_change``); a drop of
    the name it had ends the walk: the rows before it recorded another column."""
    steps: dict[int, list[tuple[int, str, str, str | None, int]]] = {oid: [] for oid in oids}
    if oids and session.scalar(_HAS_COLUMN_CHANGE):
        for oid, step, kind, old_name, new_name, before_id in session.execute(
            _COLUMN_CHANGES, {"oids": list(oids)}
        ):
            steps[oid].append((step, kind, old_name, new_name, before_id))
    spans: list[tuple[int, int | None, int | None, str]] = []
    for oid in oids:
        name: str | None = column
        upper: int | None = None
        by_step: dict[int, list[tuple[str, str, str | None, int]]] = {}
        for step, kind, old_name, new_name, before_id in steps[oid]:
            by_step.setdefault(step, []).append((kind, old_name, new_name, before_id))
        for step in sorted(by_step, reverse=True):
            changes = by_step[step]
            renamed = [c for c in changes if c[0] == "rename" and c[2] == name]
            dropped = [c for c in changes if c[0] == "drop" and c[1] == name]
            if not renamed and not dropped:
                continue
            bound = (renamed or dropped)[0][3]
            if upper is None or bound < upper:
                spans.append((oid, bound, upper, str(name)))
                upper = bound
            name = renamed[0][1] if renamed else None
            if name is None:
                break
        if name is not None:
            spans.append((oid, None, upper, name))
    return spans


def column_history(
    session: Session,
    model: object,
    column: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    *,
    typed: bool = True,
) -> list[ColumnChange]:
    """Every change of one column across a table, oldest first (``ts``, then ``id``), with
    ``since <= ts < until``: who changed it (``actor``), why (``context``), from what to what.

    ``model``: a mapped class, a Core ``Table`` or a ``"schema.table"`` name; ``column``:
    the column's name today (a mapped attribute's key is accepted too). The audit rows
    listed are those whose :attr:`RecordVersion.changes` hold the column: an INSERT or a
    SNAPSHOT (``old`` None), an UPDATE that changed it, a DELETE (``new`` None); a TRUNCATE
    has no record (see :func:`table_history`). Rows written before the column was renamed
    count under its earlier names. Selected by ``table_oid`` and ``ts`` (the
    ``record_version_table_oid`` index), under every oid the table has had; values and keys
    typed as today's columns (module documentation).
    """
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and not isinstance(bound, dt.datetime):
            raise TypeError(
                f"column_history: {name} must be a datetime, got {type(bound).__name__} {bound!r}"
            )
    described = describe_model(model)
    target = resolve(session, described)
    column = described.attribute_keys.get(column, column)
    shown = f"{target.schema}.{target.name}"
    if target.current_oid is not None and column not in target.columns:
        raise ValueError(
            f"column_history: {shown} has no column {column!r}; its columns are "
            f"{', '.join(target.columns)}"
        )
    if not target.oids:
        return []
    rv = RecordVersion
    spans = _names_over_time(session, target.oids, column)
    key_columns = [k for k in target.key_columns if k != column]
    key_spans = {k: _names_over_time(session, target.oids, k) for k in key_columns}

    def value(source: Any, spans_of: Sequence[tuple[int, int | None, int | None, str]]) -> Any:
        whens = []
        for oid, after_id, up_to_id, name in spans_of:
            condition = [rv.table_oid == oid]
            if after_id is not None:
                condition.append(rv.id > after_id)
            if up_to_id is not None:
                condition.append(rv.id <= up_to_id)
            whens.append((sa.and_(*condition), source[name]))
        if len(whens) == 1 and len(target.oids) == 1:
            return whens[0][1]
        return sa.case(*whens, else_=sa.null()) if whens else sa.null()

    new = value(rv.record, spans)
    old = value(rv.old_record, spans)
    changed = sa.or_(
        sa.and_(rv.op.in_([Operation.INSERT, Operation.SNAPSHOT]), new.is_not(None)),
        sa.and_(rv.op == Operation.DELETE, old.is_not(None)),
        sa.and_(rv.op == Operation.UPDATE, old.is_distinct_from(new)),
    )
    values = sa.func.coalesce(rv.record, rv.old_record)
    keys = [value(values, key_spans[k]) for k in key_columns]
    query = (
        sa.select(
            rv.id,
            rv.ts,
            rv.op,
            rv.actor,
            rv.context,
            rv.transaction_id,
            sa.func.coalesce(rv.record_id, rv.old_record_id),
            sa.cast(old, sa.Text),
            sa.cast(new, sa.Text),
            *(sa.cast(k, sa.Text) for k in keys),
        )
        .where(target.row_filter())
        .where(changed)
    )
    if since is not None:
        query = query.where(rv.ts >= since)
    if until is not None:
        query = query.where(rv.ts < until)
    rows = session.execute(query.order_by(rv.ts, rv.id)).all()
    wanted = [column, *key_columns]
    if typed and target.current_oid is not None and rows:
        converted = _typed_values(session, model, target, wanted, rows)
    else:
        converted = [
            [None if text is None else json.loads(text) for text in row[7:]] for row in rows
        ]
    result = []
    for row, (old_value, new_value, *key_values) in zip(rows, converted, strict=True):
        key = dict(zip(key_columns, key_values, strict=True))
        if column in target.key_columns:
            key[column] = new_value if row[2] != Operation.DELETE else old_value
        result.append(
            ColumnChange(
                column=column,
                key={k: key[k] for k in target.key_columns if k in key},
                version_id=row[0],
                ts=row[1],
                op=row[2],
                old=old_value,
                new=new_value,
                actor=row[3],
                context=row[4],
                transaction_id=row[5],
                record_id=row[6],
            )
        )
    return result


def _typed_values(
    session: Session,
    model: object,
    target: ResolvedTable,
    wanted: Sequence[str],
    rows: Sequence[sa.Row[Any]],
) -> list[list[Any]]:
    """(old, new, *keys) of each row read as today's column types, in one query."""
    types = _column_types(model, target)
    row_type = qualified_name(target.name, target.schema)
    preparer = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
    column = preparer.quote(wanted[0])
    keys = [preparer.quote(k) for k in wanted[1:]]
    # The JSON texts as stored: one object per row for the new value and the key, one
    # for the old value; missing values are JSON null (None after the read).
    new_objects = []
    old_objects = []
    for row in rows:
        texts: list[str | None] = list(row[7:])
        new_objects.append(
            "{"
            + ", ".join(
                f"{json.dumps(name)}: {text if text is not None else 'null'}"
                for name, text in zip([wanted[0], *wanted[1:]], [texts[1], *texts[2:]], strict=True)
            )
            + "}"
        )
        old_objects.append(
            "{" + f"{json.dumps(wanted[0])}: {texts[0] if texts[0] is not None else 'null'}" + "}"
        )
    statement = sa.text(
        f"select o.{column}, n.{column}{''.join(f', n.{k}' for k in keys)}"
        " from unnest(cast(:new as jsonb[]), cast(:old as jsonb[])) with ordinality"
        " as x (new, old, position)"
        f" cross join lateral jsonb_populate_record(cast(null as {row_type}), x.new) as n"
        f" cross join lateral jsonb_populate_record(cast(null as {row_type}), x.old) as o"
        " order by x.position"
    ).columns(
        sa.column("old", types[wanted[0]]),
        sa.column("new", types[wanted[0]]),
        *(sa.column(f"k{i}", types[k]) for i, k in enumerate(wanted[1:])),
    )
    return [
        list(row) for row in session.execute(statement, {"new": new_objects, "old": old_objects})
    ]
