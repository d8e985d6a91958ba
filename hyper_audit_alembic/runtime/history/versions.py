"""Reading the audit rows: one record's history, a table's, a transaction's, a context's.

The queries of the history API (:func:`history`, :func:`as_of`, :func:`table_history`,
:func:`transaction_history`, :func:`context_history`); which table and which oids come
from :mod:`.resolve`, record ids from :mod:`.record_id`.

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
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ...sqltext import qualified_name
from .model import Operation, RecordVersion
from .record_id import key_text, record_id
from .resolve import ResolvedTable, describe_model, identity_of, key_values, resolve

_Position = tuple[dt.datetime, int]


def _position(row: RecordVersion) -> _Position:
    return (row.ts, row.id)


def _versions(
    session: Session, target: ResolvedTable, key: Sequence[object]
) -> list[RecordVersion]:
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
    return lookup_record(session, model_or_obj, pk)[1]


def lookup_record(
    session: Session, model_or_obj: object, pk: object = _MISSING, *, read_as_sql: bool = False
) -> tuple[ResolvedTable, list[RecordVersion]]:
    """The table resolved and the record's versions (what :func:`history` returns).

    ``read_as_sql``: the key values are strings to read as the columns' types, the way
    SQL reads a literal (the command line: ``1.5`` finds a ``numeric(10, 2)`` key 1.50).
    """
    if pk is _MISSING:
        model, pk = identity_of(model_or_obj)
    else:
        model = model_or_obj
    table = describe_model(model)
    target = resolve(session, table)
    key = key_values(table, target, pk)
    if read_as_sql and target.current_oid is not None and target.key_columns:
        key = key_as_written(session, target, key)
    return target, _versions(session, target, key)


def key_as_written(
    session: Session, target: ResolvedTable, key: Sequence[object]
) -> tuple[str, ...]:
    """The key values as the trigger would write them: through the table's row type.

    A key typed at a terminal (``'007'`` for an int key, a timestamp in another zone) is
    text; the audit rows hold the column's canonical text, so it is read as the column
    reads it first (the ``history``, ``diff`` and ``restore`` commands use this)."""
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
    target = resolve(session, describe_model(model))
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
    (``ts``); of those with ``ts <= when``, the last written (highest audit id) counts,
    as in ``audit.table_as_of`` (a record's writers hold its row lock, so id order is
    their order). Only rows the trail recorded are known: a record that existed before
    tracking began is None until its first recorded change, or its SNAPSHOT row (the
    baseline ``op.enable_tracking(..., snapshot=True)`` records). A REDACT row changed
    the trail, not the record, and is passed over; values it erased are absent.
    """
    if when.utcoffset() is None:
        raise ValueError("as_of: pass a timezone-aware datetime (audit times are timestamptz)")
    target, versions = lookup_record(session, model, pk)
    last = max(
        (v for v in versions if v.ts <= when and v.op != Operation.REDACT),
        key=lambda v: v.id,
        default=None,
    )
    if last is None or last.record is None:
        return None
    rv = RecordVersion
    truncated = session.scalar(
        sa.select(sa.literal(True))
        .where(target.row_filter())
        .where(rv.op == Operation.TRUNCATE)
        .where(rv.ts <= when)
        .where(rv.id > last.id)
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
