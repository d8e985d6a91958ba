"""What a restore or a revert writes, and what stops it: typed, printable values.

:class:`RowWrite` is one statement (INSERT, UPDATE or DELETE of one row), :class:`Conflict`
one reason not to write, :class:`WritePlan` both lists. ``restore(..., dry_run=True)`` and
``revert_transaction(..., dry_run=True)`` return the plan without writing; a real run
returns the plan it carried out, or raises :class:`~hyper_audit_alembic.errors.ConflictError`
carrying the conflicts.

Values are JSON values as the audit rows hold them (numbers, strings, ISO timestamps),
under today's column names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["INSERT", "UPDATE", "DELETE"]


def show_value(value: object) -> str:
    """A JSON value as one line of text."""
    return json.dumps(value, ensure_ascii=False, default=str)


def show_key(key: Mapping[str, Any]) -> str:
    """A key as PostgreSQL writes one in its errors: ``(order_id, code)=(10, a)``."""
    values = (v if isinstance(v, str) else show_value(v) for v in key.values())
    return f"({', '.join(key)})=({', '.join(values)})"


@dataclass(frozen=True)
class RowWrite:
    """One row written: an INSERT, an UPDATE or a DELETE, found by its key.

    ``key`` is the row's key now (UPDATE, DELETE) or the key it gets (INSERT); ``values``
    the columns written (the whole row for an INSERT, the changed columns for an UPDATE,
    nothing for a DELETE); ``before`` the row as it is expected to be before the write
    (None for an INSERT); ``dropped`` the recorded values of columns dropped from the
    table since (they cannot be written: the column is gone; the audit row keeps them);
    ``version_id`` the audit row the write restores (restore) or undoes (revert).
    """

    action: Action
    table: str
    key: Mapping[str, Any]
    values: Mapping[str, Any]
    before: Mapping[str, Any] | None
    version_id: int
    dropped: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        head = f"{self.action} {self.table} {show_key(self.key)}"
        if self.action == "UPDATE":
            before = self.before or {}
            body = ", ".join(
                f"{name}: {show_value(before.get(name))} -> {show_value(value)}"
                for name, value in self.values.items()
            )
        elif self.action == "INSERT":
            body = ", ".join(f"{name}={show_value(v)}" for name, v in self.values.items())
        else:
            body = ""
        text = f"{head}: {body}" if body else head
        if self.dropped:
            gone = ", ".join(f"{name}={show_value(v)}" for name, v in self.dropped.items())
            text += f" [not written, column dropped since: {gone}]"
        return text


@dataclass(frozen=True)
class Conflict:
    """A row changed since the audit rows a restore or revert works from.

    ``reason`` says how (changed outside the audit trail, changed later by other audit
    rows, deleted, a key taken); ``columns`` the columns that differ, ``audit_ids`` the
    later audit rows.
    """

    table: str
    key: Mapping[str, Any]
    reason: str
    columns: tuple[str, ...] = ()
    audit_ids: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f"{self.table} {show_key(self.key)}" if self.key else self.table
        text = f"{where}: {self.reason}"
        if self.columns:
            text += f" ({', '.join(self.columns)})"
        return text


@dataclass(frozen=True)
class WritePlan:
    """The writes of a restore or revert, in the order they run, and its conflicts.

    ``written`` is True when the writes were carried out (not a dry run, no conflict or
    ``force=True``). ``str(plan)`` is one line per write, then one per conflict.
    """

    writes: tuple[RowWrite, ...]
    conflicts: tuple[Conflict, ...] = ()
    written: bool = False

    def by_table(self) -> dict[str, list[RowWrite]]:
        """The writes per table, each table's in the order they run."""
        tables: dict[str, list[RowWrite]] = {}
        for write in self.writes:
            tables.setdefault(write.table, []).append(write)
        return tables

    def __str__(self) -> str:
        lines = [str(write) for write in self.writes] or ["nothing to write"]
        lines += [f"conflict: {conflict}" for conflict in self.conflicts]
        return "\n".join(lines)
