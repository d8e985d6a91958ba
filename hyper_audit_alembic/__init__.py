"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations.

The public runtime API, re-exported (an application imports it from here, without
Alembic). The layout of the package:

- ``plugin`` (the Alembic entry point: registration), ``op`` (+ ``op.pyi``);
- ``migration/``: the operations, their SQL, renderers, comparators, catalog reads,
  option checks, the model flag;
- ``runtime/``: the history API, ``audit_context``, the time machine (restore, revert) and
  compliance (seal, verify, redact);
- ``sql/``: the audit schema as SQL files; ``sqltext``: quoting;
- ``devtools/``: the throwaway server and the demo; ``cli``: the command line;
- ``templates``, ``urls``, ``errors``, ``adapters`` (private APIs of other libraries).
"""

from .errors import ConflictError, IncompleteTrailError
from .runtime.compliance import (
    RedactResult,
    SealResult,
    VerifyReport,
    redact,
    seal,
    verify,
)
from .runtime.context import audit_context
from .runtime.history import (
    ColumnChange,
    Operation,
    PastRow,
    RecordVersion,
    VersionDiff,
    as_of,
    column_history,
    context_history,
    diff,
    history,
    net_changes,
    record_id,
    table_as_of,
    table_history,
    transaction_history,
)
from .runtime.timemachine import (
    Conflict,
    RowWrite,
    WritePlan,
    restore,
    revert_context,
    revert_transaction,
    undelete,
)

__all__ = [
    "ColumnChange",
    "Conflict",
    "ConflictError",
    "IncompleteTrailError",
    "Operation",
    "PastRow",
    "RecordVersion",
    "RedactResult",
    "RowWrite",
    "SealResult",
    "VerifyReport",
    "VersionDiff",
    "WritePlan",
    "as_of",
    "audit_context",
    "column_history",
    "context_history",
    "diff",
    "history",
    "net_changes",
    "record_id",
    "redact",
    "restore",
    "revert_context",
    "revert_transaction",
    "seal",
    "table_as_of",
    "table_history",
    "transaction_history",
    "undelete",
    "verify",
]
