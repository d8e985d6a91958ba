"""Showing a history: an audit row as JSON-ready values, a history as a text table.

What the command line (``python -m hyper_audit_alembic history``) and the demo print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import Operation, RecordVersion


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


def redaction_text(version: RecordVersion) -> str:
    """What a REDACT row erased and why: ``columns email, phone — reason`` (``the whole row
    image — reason``); empty for any other row."""
    found = version.redaction
    if found is None:
        return ""
    columns = found.get("columns")
    what = "the whole row image" if not columns else "columns " + ", ".join(map(str, columns))
    reason = found.get("reason")
    return what if reason in (None, "") else f"{what} — {reason}"


def describe_redaction(version: RecordVersion) -> str:
    """A REDACT row as one line: ``REDACT by <actor>: columns email, phone — reason``."""
    return f"REDACT by {version.actor or 'unknown'}: {redaction_text(version)}"


def context_shown(version: RecordVersion) -> dict[str, Any] | None:
    """The context a history shows: a REDACT's own ``redaction`` entry is in its changes."""
    context = version.context
    if version.op == Operation.REDACT and isinstance(context, dict):
        context = {k: v for k, v in context.items() if k != "redaction"} or None
    return context


def render_versions(versions: Sequence[RecordVersion], columns: Sequence[str] = ()) -> str:
    """A history as a text table: ts, op, actor, context, and what changed.

    An INSERT, a DELETE or a SNAPSHOT (the row as the baseline found it) shows the whole
    row, an UPDATE the columns it changed as ``column: before -> after`` (``columns``
    sets their order), a REDACT what it erased and why (:func:`redaction_text`); values and
    the context are written as JSON.
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
        elif version.op == Operation.REDACT:
            text = "redacted " + redaction_text(version)
        else:
            row = version.values or {}
            text = ", ".join(f"{name}={show(row[name])}" for name in ordered(list(row)))
        shown = context_shown(version)
        context = "" if shown is None else show(shown)
        lines.append((str(version.ts), str(version.op), version.actor or "", context, text))
    widths = [max(len(line[n]) for line in lines) for n in range(4)]
    return "".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[4]]
        ).rstrip()
        + "\n"
        for line in lines
    )
