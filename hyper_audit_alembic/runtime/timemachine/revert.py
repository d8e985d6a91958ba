"""Undoing exactly one transaction's or one request's changes: :func:`revert_transaction`
and :func:`revert_context`.

Each audit row of the set is undone, newest first (by audit id), with the inverse write:
an INSERT by a DELETE of the row, an UPDATE by an UPDATE back to its old values (the key
too: an UPDATE that changed the key gets the old key back), a DELETE by an INSERT of the
old row. Applied newest first, several changes of one row in the set undo in turn.

Before writing anything the revert checks every row it touches; a conflict stops it
whole (nothing written, :class:`~hyper_audit_alembic.errors.ConflictError` lists them):

* a later audit row of a record of the set that is not in the set (someone changed,
  deleted or re-inserted it since; a TRUNCATE of the table since);
* the row now differing from what the set's last change of it left (changed outside the
  trail), or present where the set left none.

The rows are locked (``FOR UPDATE``) before the check, so nobody changes them between the
check and the writes. The writes run in a SAVEPOINT of the caller's transaction: a write
the database refuses (a foreign key, a unique key) undoes them all and leaves the
caller's transaction usable. The library never commits: the caller does.

A TRUNCATE in the set is refused: its audit row records no rows, so it cannot be undone
from the set alone. Columns excluded, renamed, added or dropped since are handled as
:mod:`.restore` describes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ...errors import ConflictError
from ..history.model import Operation, RecordVersion
from ..history.versions import context_history, transaction_history
from .plan import Conflict, RowWrite, WritePlan
from .rows import (
    LiveTable,
    NameMapper,
    differing,
    expire_loaded,
    find_table,
    in_order,
    normalized,
    rows_now,
    write,
)


def revert_transaction(
    session: Session, transaction_id: int, *, dry_run: bool = False
) -> WritePlan:
    """Undo every change one transaction made (its audit rows' ``transaction_id``).

    Returns the plan it carried out (``dry_run=True``: the plan only, conflicts included,
    nothing written). Raises :class:`~hyper_audit_alembic.errors.ConflictError` when a
    row changed since, ``ValueError`` when there is nothing to revert or a TRUNCATE in it.
    The writes are audited like any other (set ``audit_context`` to say who reverts and
    why); the caller commits.
    """
    rows = transaction_history(session, transaction_id)
    return _revert(session, rows, f"transaction {transaction_id}", dry_run=dry_run)


def revert_context(
    session: Session,
    context: Mapping[str, Any],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    dry_run: bool = False,
) -> WritePlan:
    """Undo every change whose audit context holds these values, e.g. one request's.

    ``revert_context(session, {"request_id": "r-1"})``: the audit rows
    :func:`~hyper_audit_alembic.context_history` finds (over every table and transaction,
    ``since <= ts < until``), undone newest first in the caller's transaction, as
    :func:`revert_transaction` does.
    """
    rows = context_history(session, context, since, until)
    shown = json.dumps(dict(context), ensure_ascii=False, default=str)
    return _revert(session, rows, f"context {shown}", dry_run=dry_run)


class _Change:
    """One audit row of the set, under today's column names."""

    def __init__(self, row: RecordVersion, table: LiveTable, names: NameMapper, what: str) -> None:
        self.row = row
        self.table = table
        self.new, self.new_dropped = names(table, row.table_oid, row.record, row.id)
        self.old, self.old_dropped = names(table, row.table_oid, row.old_record, row.id)
        for state in (self.new, self.old):
            if state is not None and any(c not in state for c in table.key):
                missing = ", ".join(c for c in table.key if c not in state)
                raise ValueError(
                    f"revert: audit row {row.id} of {what} has no value for key column(s) "
                    f"{missing} of {table.shown}: it cannot say which row to write"
                )

    def undo(self) -> RowWrite | None:
        table, row = self.table, self.row
        if row.op == Operation.INSERT:
            assert self.new is not None
            return RowWrite("DELETE", table.shown, table.key_of(self.new), {}, self.new, row.id)
        if row.op == Operation.DELETE:
            assert self.old is not None
            values = in_order(self.old, table)
            return RowWrite(
                "INSERT", table.shown, table.key_of(self.old), values, None, row.id,
                self.old_dropped,
            )  # fmt: skip
        assert self.new is not None and self.old is not None
        values = {
            c: v
            for c, v in in_order(self.old, table).items()
            if c not in self.new or self.new[c] != v
        }
        dropped = {c: v for c, v in self.old_dropped.items() if self.new_dropped.get(c, v) != v}
        if not values and not dropped:
            return None
        return RowWrite(
            "UPDATE", table.shown, table.key_of(self.new), values, self.new, row.id, dropped
        )


def _only(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name in columns}


def _key_text(key: Mapping[str, Any]) -> str:
    return json.dumps(dict(key), sort_keys=True)


def _revert(
    session: Session, rows: Sequence[RecordVersion], what: str, *, dry_run: bool
) -> WritePlan:
    session.flush()
    rows = sorted(rows, key=lambda r: r.id)
    if not rows:
        raise ValueError(f"revert: no audit rows for {what}: nothing to revert")
    for row in rows:
        if row.op == Operation.TRUNCATE:
            raise ValueError(
                f"revert: {what} truncated {row.table_schema}.{row.table_name} (audit row "
                f"{row.id}): a TRUNCATE's audit row records no rows, so it cannot be undone "
                "from the trail; nothing written"
            )
    names = NameMapper(session)
    tables: dict[tuple[int, str, str], LiveTable] = {}
    changes: list[_Change] = []
    for row in rows:
        if row.op == Operation.SNAPSHOT:  # records a row, changes nothing
            continue
        where = (row.table_oid, row.table_schema, row.table_name)
        if where not in tables:
            found = find_table(session, *where)
            if found is None:
                raise ValueError(
                    f"revert: table {row.table_schema}.{row.table_name} of audit row {row.id} "
                    f"of {what} does not exist now; nothing written"
                )
            tables[where] = found
        changes.append(_Change(row, tables[where], names, what))

    # What the set left, per table and key: the row (its last version) or None (removed).
    left: dict[tuple[int, str], tuple[LiveTable, dict[str, Any], dict[str, Any] | None, int]] = {}

    def leave(
        table: LiveTable, state: dict[str, Any], row_state: dict[str, Any] | None, i: int
    ) -> None:
        key = table.key_of(state)
        left[(table.oid, _key_text(key))] = (table, key, row_state, i)

    for change in changes:
        if change.old is not None and (
            change.new is None or change.table.key_of(change.old) != change.table.key_of(change.new)
        ):
            leave(change.table, change.old, None, change.row.id)
        if change.new is not None:
            leave(change.table, change.new, change.new, change.row.id)

    conflicts: dict[tuple[int, str], Conflict] = {}
    _later_rows(session, changes, {r.id for r in rows}, conflicts)
    by_table: dict[
        int, list[tuple[tuple[int, str], dict[str, Any], dict[str, Any] | None, int]]
    ] = {}
    for place, (table, key, state, i) in left.items():
        by_table.setdefault(table.oid, []).append((place, key, state, i))
    live = {table.oid: table for table in tables.values()}
    for oid, entries in by_table.items():
        table = live[oid]
        if (oid, "") in conflicts:  # truncated since: that says it for every row
            continue
        compared = [c for c in table.columns if c not in table.generated]
        now_rows = rows_now(session, table, [key for _, key, _, _ in entries], lock=not dry_run)
        expected = normalized(
            session, table,
            [_only(state or {}, compared) for _, _, state, _ in entries],
        )  # fmt: skip
        for (place, key, state, i), now, recorded in zip(entries, now_rows, expected, strict=True):
            if place in conflicts:
                continue
            if state is None and now is not None:
                conflicts[place] = Conflict(
                    table.shown, key,
                    f"a row with this key exists now, though audit row {i} left none: "
                    "written outside the audit trail",
                )  # fmt: skip
            elif state is not None and now is None:
                conflicts[place] = Conflict(
                    table.shown, key,
                    f"deleted outside the audit trail since audit row {i}",
                )  # fmt: skip
            elif state is not None and now is not None:
                changed = differing(now, recorded, table)
                if changed:
                    conflicts[place] = Conflict(
                        table.shown, key,
                        f"differs from what audit row {i} left: changed outside the audit trail",
                        tuple(changed),
                    )  # fmt: skip

    writes = tuple(w for w in (c.undo() for c in reversed(changes)) if w is not None)
    listed = tuple(conflicts.values())
    plan = WritePlan(writes, listed)
    if dry_run:
        return plan
    if listed:
        more = f" (and {len(listed) - 1} more in .conflicts)" if len(listed) > 1 else ""
        raise ConflictError(
            f"revert {what}: {listed[0]}{more}; nothing written: undo the later changes "
            "first, or restore() the rows one by one",
            listed,
            plan,
        )
    table_of = {(c.table.shown, c.row.id): c.table for c in changes}
    try:
        with session.begin_nested():
            for planned in writes:
                write(session, table_of[(planned.table, planned.version_id)], planned)
    except LookupError as error:
        conflict = Conflict(writes[0].table, {}, f"a row changed during the revert: {error}")
        raise ConflictError(f"revert {what}: {error}; nothing written", [conflict], plan) from None
    for table in tables.values():
        expire_loaded(session, table)
    return WritePlan(writes, (), written=True)


def _later_rows(
    session: Session,
    changes: Sequence[_Change],
    in_set: set[int],
    conflicts: dict[tuple[int, str], Conflict],
) -> None:
    """Conflicts for the audit rows, not in the set, that changed a record of the set after it."""
    first: dict[Any, int] = {}  # record id -> the first audit row of the set touching it
    where: dict[Any, tuple[LiveTable, dict[str, Any]]] = {}
    for change in changes:
        for rid, state in (
            (change.row.record_id, change.new),
            (change.row.old_record_id, change.old),
        ):
            if rid is None or state is None:
                continue
            first[rid] = min(first.get(rid, change.row.id), change.row.id)
            where.setdefault(rid, (change.table, change.table.key_of(state)))
    if not first:
        return
    rv = RecordVersion
    later: dict[tuple[int, str], list[RecordVersion]] = {}
    keys: dict[tuple[int, str], tuple[LiveTable, dict[str, Any]]] = {}
    for row in session.scalars(
        sa.select(rv)
        .where(sa.or_(rv.record_id.in_(list(first)), rv.old_record_id.in_(list(first))))
        .where(rv.id > min(first.values()))
        .order_by(rv.id)
    ):
        if row.id in in_set or row.op == Operation.SNAPSHOT:
            continue
        for rid in (row.record_id, row.old_record_id):
            if rid in first and row.id > first[rid]:
                table, key = where[rid]
                place = (table.oid, _key_text(key))
                later.setdefault(place, [])
                if row not in later[place]:
                    later[place].append(row)
                keys[place] = (table, key)
    table_oids = {c.row.table_oid: c.table for c in changes}
    for row in session.scalars(
        sa.select(rv)
        .where(rv.table_oid.in_(list(table_oids)))
        .where(rv.op == Operation.TRUNCATE)
        .where(rv.id > min(c.row.id for c in changes))
        .order_by(rv.id)
    ):
        table = table_oids[row.table_oid]
        place = (table.oid, "")
        later.setdefault(place, []).append(row)
        keys[place] = (table, {})
    for place, found in later.items():
        table, key = keys[place]
        head = found[0]
        actor = f" by {head.actor}" if head.actor else ""
        conflicts[place] = Conflict(
            table.shown,
            key,
            f"changed later by audit row {head.id} ({head.op}{actor}, transaction "
            f"{head.transaction_id})" + (f" and {len(found) - 1} more" if len(found) > 1 else ""),
            audit_ids=tuple(r.id for r in found),
        )
