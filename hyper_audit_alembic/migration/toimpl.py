"""How each audit op runs: its SQL, emitted online or written out in offline mode.

The implementations know nothing of any op's arguments: each op says its SQL
(``statements()``), and :func:`emit` runs it or writes it. :mod:`hyper_audit_alembic.plugin`
registers these for the op classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from ..errors import AuditOperationError
from .ops import UNADOPT_REFUSAL

if TYPE_CHECKING:
    from alembic.operations import Operations

    from .ops import UnadoptAuditOp, UpgradeAuditOp


class HasStatements(Protocol):
    """An op that says its SQL: every op but op.unadopt_audit()."""

    def statements(self) -> list[str]: ...


def emit(operations: Operations, statements: Iterable[str]) -> None:
    """Run statements online, or write them verbatim in offline mode.

    Verbatim keeps '%' and ':' in names intact whatever paramstyle env.py chose.
    """
    context = operations.get_context()
    if context.dialect.name != "postgresql":
        raise AuditOperationError(
            f"hyper_audit: the audit trail needs PostgreSQL, but this migration runs on "
            f"{context.dialect.name!r}. Run it against PostgreSQL, or remove the audit "
            f"operations from it."
        )
    if context.as_sql:
        for statement in statements:
            context.impl.static_output(statement + context.impl.command_terminator)
    else:
        # no_parameters: the driver gets the text alone, so a '%' in a table name is not
        # read as a placeholder (psycopg2 and psycopg 3 interpolate when params are passed).
        connection = operations.get_bind()
        for statement in statements:
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


def run_statements(operations: Operations, operation: HasStatements) -> None:
    """Every op but op.unadopt_audit(): its SQL."""
    emit(operations, operation.statements())


def run_upgrade(operations: Operations, operation: UpgradeAuditOp) -> None:
    """op.upgrade_audit(): its SQL; with ``commit=True`` then a commit, and the migration
    goes on in a new transaction.

    An empty ``autocommit_block()`` is Alembic's commit point: online it commits the
    migration's transaction and begins another; offline it writes ``COMMIT;`` and
    ``BEGIN;``. What follows (a snapshot) can then write the label SNAPSHOT the upgrade
    added, which PostgreSQL refuses in the adding transaction.
    """
    emit(operations, operation.statements())
    if operation.commits():
        with operations.get_context().autocommit_block():
            pass


def refuse_unadopt(operations: Operations, operation: UnadoptAuditOp) -> None:
    """op.unadopt_audit(): an adoption cannot be undone; the error says what to write."""
    raise AuditOperationError(UNADOPT_REFUSAL)
