"""``RecordVersion``: one row of ``audit.record_version``, as an ORM class.

Mapped in a registry and ``MetaData`` of its own (:class:`AuditBase`), never the
user's, so autogenerate never sees the audit table; usable with the application's own
``Session``.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Operation(str, enum.Enum):
    """The ``audit.operation`` labels; members compare equal to their strings.

    ``SNAPSHOT`` (audit schema version 4): a row the table held when its baseline was
    taken (``op.enable_tracking(..., snapshot=True)``, ``audit.snapshot()``), recorded
    like an INSERT (``record`` and ``record_id``, no ``old_*``) but not a change.

    ``REDACT`` (audit schema version 5): ``audit.redact()`` erased values from the audit
    rows of the record ``record_id`` names. It changes no row of the table (``record`` and
    ``old_record`` are None); ``context["redaction"]`` says which columns (None: the whole
    row image), why (``reason``), how many audit rows (``rows``) and the seal-log link that
    records it (``link``), and ``actor`` who.
    """

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    TRUNCATE = "TRUNCATE"
    SNAPSHOT = "SNAPSHOT"
    REDACT = "REDACT"

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
        """The row after the change, or before it for a DELETE (None for a TRUNCATE); for
        a SNAPSHOT the row as it was when the baseline was taken."""
        return self.record if self.record is not None else self.old_record

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        """``{column: (before, after)}`` for the columns this change set or altered.

        An INSERT lists every column with ``before`` None, a DELETE every column with
        ``after`` None, an UPDATE only the columns whose value changed. A SNAPSHOT is a
        baseline, not a change: ``{}`` (its row is :attr:`values`; what it held before
        tracking began is not known, so no column shows as set from None). A REDACT
        changed the trail, not the row: ``{}`` (what it erased is :attr:`redaction`).
        """
        if self.op in (Operation.SNAPSHOT, Operation.REDACT):
            return {}
        old = self.old_record or {}
        new = self.record or {}
        names = list(new) + [name for name in old if name not in new]
        if self.op == Operation.UPDATE:
            names = [n for n in names if n not in old or n not in new or old[n] != new[n]]
        return {name: (old.get(name), new.get(name)) for name in names}

    @property
    def redaction(self) -> dict[str, Any] | None:
        """For a REDACT row: ``{"columns": [...] or None, "reason": ..., "link": n, "rows":
        n}`` (the columns whose values were erased, None for the whole row image); else
        None."""
        if self.op != Operation.REDACT or not isinstance(self.context, dict):
            return None
        found = self.context.get("redaction")
        return found if isinstance(found, dict) else None

    def __repr__(self) -> str:
        return (
            f"<RecordVersion {self.id} {self.op} {self.table_schema}.{self.table_name} "
            f"at {self.ts}>"
        )
