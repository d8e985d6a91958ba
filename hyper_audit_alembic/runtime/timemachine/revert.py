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

A TRUNCATE in the set is undone by INSERTing back every row the table held just before
it, as the trail rebuilds them (``audit.table_before``: the table's audit rows with a
smaller id; not "as of its time", which the changes its transaction made before it
share). That needs the table's trail to be complete then (a snapshot, or tracked while
empty: ``audit.trail_complete_since``); elsewhere the revert is refused
(:class:`~hyper_audit_alembic.errors.IncompleteTrailError`), naming the fix. Conflicts of
a TRUNCATE, besides those above for the rows the set changed:

* a row the table holds now that is not in the table the TRUNCATE left (empty, then what
  the set wrote after it): added since by someone else (its audit row is named) or outside
  the trail. Putting the old rows back beside it would mix two states. What counts is the
  table now: rows added and removed again since are no conflict;
* a row now with the key of a row to put back, where the set left none;
* a later TRUNCATE of the table by someone else.

A real run holds a SHARE ROW EXCLUSIVE lock on such a table from its checks on
(writers wait until the caller's transaction ends), so no row is added meanwhile.

Columns excluded, renamed, added or dropped since are handled as :mod:`.restore`
describes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ...errors import ConflictError, IncompleteTrailError
from ...sqltext import quote_identifier
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
    row changed since, :class:`~hyper_audit_alembic.errors.IncompleteTrailError` when it
    holds a TRUNCATE the trail cannot undo (no complete trail of the table then: take a
    snapshot), ``ValueError`` when there is nothing to revert.
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

    def left(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(a row's key state, the row it leaves or None) for each key this change touched."""
        found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        table = self.table
        if self.old is not None and (
            self.new is None or table.key_of(self.old) != table.key_of(self.new)
        ):
            found.append((self.old, None))
        if self.new is not None:
            found.append((self.new, self.new))
        return found

    def undo(self) -> list[RowWrite]:
        table, row = self.table, self.row
        if row.op == Operation.INSERT:
            assert self.new is not None
            return [RowWrite("DELETE", table.shown, table.key_of(self.new), {}, self.new, row.id)]
        if row.op == Operation.DELETE:
            assert self.old is not None
            values = in_order(self.old, table)
            return [RowWrite(
                "INSERT", table.shown, table.key_of(self.old), values, None, row.id,
                self.old_dropped,
            )]  # fmt: skip
        assert self.new is not None and self.old is not None
        values = {
            c: v
            for c, v in in_order(self.old, table).items()
            if c not in self.new or self.new[c] != v
        }
        dropped = {c: v for c, v in self.old_dropped.items() if self.new_dropped.get(c, v) != v}
        if not values and not dropped:
            return []
        key = table.key_of(self.new)
        return [RowWrite("UPDATE", table.shown, key, values, self.new, row.id, dropped)]


_TABLE_BEFORE = sa.text(
    "select t.record, t.dropped from audit.table_before(cast(:oid as regclass), :before_id) t"
    " order by t.version_id"
)


class _Truncate:
    """A TRUNCATE of the set, with the rows the table held just before it (the trail's
    rebuild, ``audit.table_before``): undone by INSERTing them back."""

    def __init__(self, session: Session, row: RecordVersion, table: LiveTable, what: str) -> None:
        self.row = row
        self.table = table
        self.rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
        refused = _rebuild_refused(session, table)
        if refused is None:
            try:
                with session.begin_nested():
                    found = session.execute(
                        _TABLE_BEFORE, {"oid": table.oid, "before_id": row.id}
                    ).all()
            except sa.exc.DBAPIError as error:
                if _sqlstate(error) not in ("HA001", "22023"):
                    raise
                refused = _primary_message(error).removeprefix("audit.table_before: ")
        if refused is not None:
            raise IncompleteTrailError(
                f"revert: {what} truncated {table.shown} (audit row {row.id}), which the trail "
                f"cannot undo: {refused}; nothing written. A snapshot of the table makes later "
                "TRUNCATEs reversible: op.enable_tracking(..., snapshot=True) in a migration, "
                f"or call audit.snapshot({_literal(table.shown)})"
            )
        for record, dropped in found:
            values = dict(record)
            gone = dict(dropped or {})
            for name in [n for n in values if n not in table.columns]:
                gone[name] = values.pop(name)
            missing = [c for c in table.key if c not in values]
            if missing:
                raise ValueError(
                    f"revert: a row {table.shown} held before the TRUNCATE of audit row {row.id} "
                    f"has no value for key column(s) {', '.join(missing)}: it cannot be put back"
                )
            self.rows.append((values, gone))

    def left(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        return [(values, None) for values, _ in self.rows]

    def undo(self) -> list[RowWrite]:
        t, truncate_id = self.table, self.row.id
        return [
            RowWrite("INSERT", t.shown, t.key_of(v), in_order(v, t), None, truncate_id, d)
            for v, d in self.rows
        ]


def _rebuild_refused(session: Session, table: LiveTable) -> str | None:
    """Why the trail cannot rebuild a table at all (an audit schema before version 4)."""
    available = session.scalar(
        sa.text("select pg_catalog.to_regprocedure('audit.table_before(regclass, bigint)')")
    )
    if available is None:
        return (
            f"the audit schema is older than version 4, which records when the trail of "
            f"{table.shown} is complete (upgrade it: op.upgrade_audit())"
        )
    return None


def _sqlstate(error: sa.exc.DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)


def _primary_message(error: sa.exc.DBAPIError) -> str:
    diag = getattr(error.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return primary or str(error.orig).strip().splitlines()[0]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
    names = NameMapper(session)
    tables: dict[tuple[int, str, str], LiveTable] = {}
    changes: list[_Change | _Truncate] = []
    for row in rows:
        if row.op in (Operation.SNAPSHOT, Operation.REDACT):  # change no row of the table
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
        if row.op == Operation.TRUNCATE:
            changes.append(_Truncate(session, row, tables[where], what))
        else:
            changes.append(_Change(row, tables[where], names, what))
    if not changes and any(row.op == Operation.REDACT for row in rows):
        raise ValueError(
            f"revert: {what} only redacted values in the audit trail (REDACT rows): it "
            "changed no row to undo, and erased values cannot be put back"
        )

    # What the set left, per table and key: the row (its last version) or None (removed).
    left: dict[tuple[int, str], tuple[LiveTable, dict[str, Any], dict[str, Any] | None, int]] = {}

    def leave(
        table: LiveTable, state: dict[str, Any], row_state: dict[str, Any] | None, i: int
    ) -> None:
        key = table.key_of(state)
        left[(table.oid, _key_text(key))] = (table, key, row_state, i)

    for change in changes:
        for keyed, row_left in change.left():
            leave(change.table, keyed, row_left, change.row.id)

    conflicts: dict[tuple[int, str], Conflict] = {}
    truncates = [c for c in changes if isinstance(c, _Truncate)]
    if not dry_run:  # nobody adds rows to a table whose TRUNCATE is undone until commit
        for table in {t.table.oid: t.table for t in truncates}.values():
            session.execute(sa.text(f"lock table only {table.sql} in share row exclusive mode"))
    _later_rows(session, changes, {r.id for r in rows}, conflicts)
    by_table: dict[
        int, list[tuple[tuple[int, str], dict[str, Any], dict[str, Any] | None, int]]
    ] = {}
    for place, (table, key, state, i) in left.items():
        by_table.setdefault(table.oid, []).append((place, key, state, i))
    live = {table.oid: table for table in tables.values()}
    for oid, entries in by_table.items():
        table = live[oid]
        if (oid, "") in conflicts:  # the table's conflict says it for every row
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

    for truncate in {t.table.oid: t for t in truncates}.values():  # each table's first
        if (truncate.table.oid, "") not in conflicts:
            touched = [k for (oid, _), (_, k, _, _) in left.items() if oid == truncate.table.oid]
            _added_since(session, truncate, touched, {r.id for r in rows}, conflicts)
    writes = tuple(w for c in reversed(changes) for w in c.undo())
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
    changes: Sequence[_Change | _Truncate],
    in_set: set[int],
    conflicts: dict[tuple[int, str], Conflict],
) -> None:
    """Conflicts for the audit rows, not in the set, that changed a record of the set after
    it; of a table, for a TRUNCATE of it since the set's first change of it, and for any
    change of it after a TRUNCATE of the set."""
    rv = RecordVersion
    first: dict[Any, int] = {}  # record id -> the first audit row of the set touching it
    where: dict[Any, tuple[LiveTable, dict[str, Any]]] = {}
    first_of_table: dict[int, int] = {}  # table oid -> the set's first audit row of it
    truncated: dict[int, int] = {}  # table oid -> the set's first TRUNCATE of it
    truncate_ids: dict[int, list[int]] = {}  # table oid -> the set's TRUNCATEs of it
    tables: dict[int, LiveTable] = {}
    for change in changes:
        oid = change.row.table_oid
        tables[oid] = change.table
        first_of_table.setdefault(oid, change.row.id)  # changes come in id order
        if isinstance(change, _Truncate):
            truncated.setdefault(oid, change.row.id)
            truncate_ids.setdefault(oid, []).append(change.row.id)
            continue
        for rid, state in (
            (change.row.record_id, change.new),
            (change.row.old_record_id, change.old),
        ):
            if rid is None or state is None:
                continue
            first[rid] = min(first.get(rid, change.row.id), change.row.id)
            where.setdefault(rid, (change.table, change.table.key_of(state)))

    def outside(row: RecordVersion) -> bool:
        return row.id not in in_set and row.op not in (Operation.SNAPSHOT, Operation.REDACT)

    later: dict[tuple[int, str], list[RecordVersion]] = {}
    keys: dict[tuple[int, str], tuple[LiveTable, dict[str, Any]]] = {}
    if first:
        for row in session.scalars(
            sa.select(rv)
            .where(sa.or_(rv.record_id.in_(list(first)), rv.old_record_id.in_(list(first))))
            .where(rv.id > min(first.values()))
            .order_by(rv.id)
        ):
            if not outside(row):
                continue
            for rid in (row.record_id, row.old_record_id):
                if rid in first and row.id > first[rid]:
                    if any(first[rid] < t < row.id for t in truncate_ids.get(row.table_oid, ())):
                        continue  # the set emptied the table between: _added_since checks
                    table, key = where[rid]
                    place = (table.oid, _key_text(key))
                    later.setdefault(place, [])
                    if row not in later[place]:
                        later[place].append(row)
                    keys[place] = (table, key)
    of_table: dict[int, list[RecordVersion]] = {}
    for row in session.scalars(
        sa.select(rv)
        .where(rv.table_oid.in_(list(tables)))
        .where(rv.id > min(first_of_table.values()))
        .where(rv.op == Operation.TRUNCATE)
        .order_by(rv.id)
    ):
        if outside(row) and row.id > first_of_table[row.table_oid]:
            of_table.setdefault(row.table_oid, []).append(row)
    for oid, found in of_table.items():
        place = (tables[oid].oid, "")
        later[place] = found
        keys[place] = (tables[oid], {})
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


#: How many rows added since a TRUNCATE a conflict lists one by one.
SHOWN_ADDED = 20


def _added_since(
    session: Session,
    truncate: _Truncate,
    keyed: Sequence[Mapping[str, Any]],
    in_set: set[int],
    conflicts: dict[tuple[int, str], Conflict],
) -> None:
    """Conflicts for the rows the table holds now that are not in the table the TRUNCATE
    left (empty, then what the set wrote after it: ``keyed``, every key the set touched,
    which the other checks cover). Rows someone added since and removed again are no
    conflict: what counts is the table now."""
    table = truncate.table
    match = " and ".join(f"t.{quote_identifier(c)} = k.{quote_identifier(c)}" for c in table.key)
    found = session.execute(
        sa.text(
            f"select to_jsonb(t.*) from {table.sql} as t where not exists ("
            " select from jsonb_array_elements(cast(:keys as jsonb)) as e (value)"
            f" cross join lateral jsonb_populate_record(cast(null as {table.sql}), e.value) as k"
            f" where {match}) limit {SHOWN_ADDED + 1}"
        ),
        {"keys": json.dumps([dict(key) for key in keyed])},
    ).scalars()
    added = [table.key_of(row) for row in found]
    rv = RecordVersion
    for key in added[:SHOWN_ADDED]:
        writer = session.scalars(
            sa.select(rv)
            .where(rv.table_oid == truncate.row.table_oid)
            .where(rv.id > truncate.row.id)
            .where(rv.id.not_in(list(in_set)))
            .where(rv.record.contains(key))
            .order_by(rv.id.desc())
            .limit(1)
        ).first()
        if writer is None:
            how = "outside the audit trail"
        else:
            actor = f" by {writer.actor}" if writer.actor else ""
            how = f"by audit row {writer.id} ({writer.op}{actor}, transaction "
            how += f"{writer.transaction_id})"
        conflicts[(table.oid, _key_text(key))] = Conflict(
            table.shown, key,
            f"added after the TRUNCATE of audit row {truncate.row.id} {how}: not in the table "
            "that TRUNCATE left",
        )  # fmt: skip
    if len(added) > SHOWN_ADDED:
        conflicts[(table.oid, "")] = Conflict(
            table.shown, {},
            f"more rows added after the TRUNCATE of audit row {truncate.row.id} than the "
            f"{SHOWN_ADDED} listed",
        )  # fmt: skip
