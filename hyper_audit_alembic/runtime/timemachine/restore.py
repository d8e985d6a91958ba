"""Putting one record back as it was: :func:`restore` and :func:`undelete`.

The record's versions are its audit rows (:func:`~hyper_audit_alembic.history`: followed
through changes of its primary key and through backup and restore), in the order of their
audit ids: writers of one row are serialised by its row lock, so id order is their order
(``ts`` is the start of each transaction, which can put a later change first).

The row is written with one UPDATE (only the columns that differ) or, when the row is
gone, one INSERT, through the caller's ``Session``: the triggers record the restore like
any change, with the actor and context the caller set (``audit_context``). The library
flushes nothing but the caller's pending changes and never commits: the caller commits
(or rolls back), as with any other write of the session.

What a version cannot hold is never guessed:

* columns excluded from the trail (``enable_tracking(..., exclude=...)``) are not in the
  audit rows: a restore neither compares nor writes them; an UPDATE leaves them as they
  are, an INSERT gives them their default;
* columns added since the version: the same (they were not there);
* columns renamed since: mapped to today's names (``audit.current_names``);
* columns dropped since: their recorded values cannot be written (the column is gone);
  they are reported in the plan (``RowWrite.dropped``) and stay in the audit rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ...errors import ConflictError
from ..history.model import Operation, RecordVersion
from ..history.resolve import describe_model, identity_of, key_values
from ..history.versions import lookup_record
from .plan import Conflict, RowWrite, WritePlan, show_key
from .rows import (
    LiveTable,
    NameMapper,
    describe,
    differing,
    expire_loaded,
    in_order,
    normalized,
    rows_now,
    write,
)

_MISSING: Any = object()


class _Record:
    """One record's versions (by audit id) and the TRUNCATEs of its table after its first.

    A REDACT row is not a version: it erased values from the trail, the row is as it was.
    """

    def __init__(self, session: Session, what: str, obj_or_model: object, pk: object) -> None:
        session.flush()
        if pk is _MISSING:
            model, pk = identity_of(obj_or_model)
        else:
            model = obj_or_model
        target, versions = lookup_record(session, model, pk)
        given = key_values(describe_model(model), target, pk)
        self.key_shown = show_key(dict(zip(target.key_columns or (), given, strict=False)))
        if target.current_oid is None:
            raise ValueError(
                f"{what}: table {target.schema}.{target.name} does not exist now: create it "
                "(or restore it from a backup) before restoring its rows"
            )
        self.table: LiveTable = describe(session, target.current_oid)
        self.versions = sorted(
            (v for v in versions if v.op not in (Operation.TRUNCATE, Operation.REDACT)),
            key=lambda v: v.id,
        )
        if not self.versions:
            raise ValueError(
                f"{what}: no audit rows for {self.table.shown} {self.key_shown}: the trail "
                "has no version of it to restore (was the table tracked when it changed?)"
            )
        rv = RecordVersion
        self.truncates: list[tuple[int, dt.datetime]] = [
            (int(i), ts)
            for i, ts in session.execute(
                sa.select(rv.id, rv.ts)
                .where(target.row_filter())
                .where(rv.op == Operation.TRUNCATE)
                .where(rv.id > self.versions[0].id)
                .order_by(rv.id)
            )
        ]
        self.what = what

    @property
    def last(self) -> RecordVersion:
        return self.versions[-1]

    def truncated_after(
        self, version: RecordVersion, when: dt.datetime | None = None
    ) -> int | None:
        """The first TRUNCATE after ``version`` (with ``ts <= when``), if any."""
        for truncate_id, ts in self.truncates:
            if truncate_id > version.id and (when is None or ts <= when):
                return truncate_id
        return None

    @property
    def name(self) -> str:
        return f"{self.table.shown} {self.key_shown}"


def restore(
    session: Session,
    obj_or_model: object,
    pk: object = _MISSING,
    *,
    to: int | dt.datetime,
    force: bool = False,
    dry_run: bool = False,
) -> WritePlan:
    """Put one record back as one of its versions: an UPDATE, or an INSERT if it is gone.

    ``restore(session, obj, to=...)`` or ``restore(session, Model, pk, to=...)`` (``Model``
    a mapped class, a Core ``Table`` or a ``"schema.table"`` name; ``pk`` as
    :func:`~hyper_audit_alembic.history` takes it). ``to`` is a version's audit id
    (``RecordVersion.id``) or an aware datetime (the last version with ``ts <= to``).

    Refuses (:class:`~hyper_audit_alembic.errors.ConflictError`, nothing written) when the
    row now differs from the record's last version (changed outside the audit trail:
    tracking was off, triggers disabled) or its key is taken by another row, unless
    ``force=True``. ``dry_run=True`` writes nothing and returns the plan, conflicts
    included. Returns the plan it carried out; the caller commits.
    """
    record = _Record(session, "restore", obj_or_model, pk)
    version = _version_at(record, to)
    return _put_back(session, record, version, version.record, force=force, dry_run=dry_run)


def undelete(
    session: Session,
    obj_or_model: object,
    pk: object = _MISSING,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> WritePlan:
    """Put back a deleted record as it was when it was deleted (or truncated).

    ``undelete(session, Model, pk)`` or ``undelete(session, obj)`` for a deleted object:
    an INSERT of the row the DELETE's audit row holds, written through the session (so
    audited). Refuses (``ValueError``) when the record's last version left it in the
    table; otherwise as :func:`restore`.
    """
    record = _Record(session, "undelete", obj_or_model, pk)
    last = record.last
    if last.record is None:  # a DELETE (or a key change away, which history follows)
        return _put_back(session, record, last, last.old_record, force=force, dry_run=dry_run)
    truncated = record.truncated_after(last)
    if truncated is not None:
        return _put_back(session, record, last, last.record, force=force, dry_run=dry_run)
    raise ValueError(
        f"undelete: {record.name} is not deleted: its last version (audit row {last.id}, "
        f"{last.op}) left it in the table; use restore(..., to=<version id or time>) to put "
        "back an earlier version"
    )


def _version_at(record: _Record, to: object) -> RecordVersion:
    if isinstance(to, bool) or not isinstance(to, (int, dt.datetime)):
        raise TypeError(
            f"restore: to must be a version's audit id (int) or a timezone-aware datetime, "
            f"got {type(to).__name__} {to!r}"
        )
    if isinstance(to, int):
        for version in record.versions:
            if version.id == to:
                if version.record is None:
                    raise ValueError(
                        f"restore: audit row {to} deleted {record.name}, so it holds no row "
                        "to put back: use undelete() for the row it deleted, or an earlier "
                        "version"
                    )
                return version
        ids = ", ".join(str(v.id) for v in record.versions[-5:])
        raise ValueError(
            f"restore: audit row {to} is not a version of {record.name} (its latest "
            f"versions: {ids}; see history())"
        )
    if to.utcoffset() is None:
        raise ValueError("restore: pass a timezone-aware datetime (audit times are timestamptz)")
    earlier = [v for v in record.versions if v.ts <= to]
    if not earlier:
        raise ValueError(
            f"restore: {record.name} has no recorded version at or before {to.isoformat()} "
            f"(its first is at {record.versions[0].ts.isoformat()})"
        )
    version = max(earlier, key=lambda v: v.id)
    if version.record is None:
        raise ValueError(
            f"restore: {record.name} did not exist at {to.isoformat()} (deleted by audit row "
            f"{version.id}): use undelete() for the row it deleted, or an earlier time"
        )
    truncated = record.truncated_after(version, to)
    if truncated is not None:
        raise ValueError(
            f"restore: {record.name} did not exist at {to.isoformat()} (its table was "
            f"truncated by audit row {truncated}): use undelete(), or an earlier time"
        )
    return version


def _put_back(
    session: Session,
    record: _Record,
    version: RecordVersion,
    values: dict[str, Any] | None,
    *,
    force: bool,
    dry_run: bool,
) -> WritePlan:
    table = record.table
    names = NameMapper(session)
    wanted, dropped = names(table, version.table_oid, values, version.id)
    assert wanted is not None
    missing = [c for c in table.key if c not in wanted]
    if missing:
        raise ValueError(
            f"{record.what}: audit row {version.id} of {record.name} has no value for key "
            f"column(s) {', '.join(missing)} of the table now: it cannot say which row to write"
        )
    last = record.last
    expected: dict[str, Any] | None = None
    if last.record is not None and record.truncated_after(last) is None:
        expected, _ = names(table, last.table_oid, last.record, last.id)
    wanted_key = table.key_of(wanted)
    found_key = table.key_of(expected) if expected is not None else wanted_key
    (now,) = rows_now(session, table, [found_key], lock=not dry_run)
    conflicts: list[Conflict] = []
    compared = [c for c in table.columns if c not in table.generated]
    if expected is not None:
        if now is None:
            conflicts.append(
                Conflict(
                    table.shown, found_key,
                    f"deleted outside the audit trail (its last version, audit row {last.id}, "
                    "left it in the table)",
                )
            )  # fmt: skip
        else:
            (recorded,) = normalized(session, table, [_only(expected, compared)])
            changed = differing(now, recorded, table)
            if changed:
                conflicts.append(
                    Conflict(
                        table.shown, found_key,
                        f"differs from its last recorded version (audit row {last.id}): "
                        "changed outside the audit trail",
                        tuple(changed),
                    )
                )  # fmt: skip
    elif now is not None:
        conflicts.append(
            Conflict(
                table.shown, found_key,
                f"a row with this key exists, though the record's last version (audit row "
                f"{last.id}) left none: written outside the audit trail",
            )
        )  # fmt: skip
    if now is not None and wanted_key != found_key:
        (taken,) = rows_now(session, table, [wanted_key], lock=False)
        if taken is not None:
            conflicts.append(
                Conflict(table.shown, wanted_key, "the key to restore is taken by another row")
            )
    writes: list[RowWrite] = []
    target = in_order(wanted, table)
    if now is not None:
        (restored,) = normalized(session, table, [target])
        changes = {c: target[c] for c in differing(now, restored, table)}
        if changes:
            writes.append(
                RowWrite("UPDATE", table.shown, found_key, changes, now, version.id, dropped)
            )
    else:
        writes.append(
            RowWrite("INSERT", table.shown, wanted_key, target, None, version.id, dropped)
        )
    plan = WritePlan(tuple(writes), tuple(conflicts))
    if dry_run:
        return plan
    if conflicts and not force:
        raise ConflictError(
            f"{record.what}: {conflicts[0]}; nothing written: pass force=True to overwrite it"
            + (
                f" ({len(conflicts) - 1} more conflict(s) in .conflicts)"
                if len(conflicts) > 1
                else ""
            ),
            conflicts,
            plan,
        )
    for planned in writes:
        write(session, table, planned)
    expire_loaded(session, table)
    return WritePlan(plan.writes, plan.conflicts, written=True)


def _only(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name in columns}
