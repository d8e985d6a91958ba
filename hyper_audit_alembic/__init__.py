"""hyper_audit_alembic: a PostgreSQL audit trail managed by Alembic migrations.

The public runtime API, re-exported (an application imports it from here, without
Alembic). The layout of the package:

- ``plugin`` (the Alembic entry point: registration), ``op`` (+ ``op.pyi``);
- ``migration/``: the operations, their SQL, renderers, comparators, catalog reads,
  option checks, the model flag;
- ``runtime/``: the history API and ``audit_context``;
- ``sql/``: the audit schema as SQL files; ``sqltext``: quoting;
- ``devtools/``: the throwaway server and the demo; ``cli``: the command line;
- ``templates``, ``urls``, ``errors``, ``adapters`` (private APIs of other libraries).
"""

from .errors import IncompleteTrailError
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

__all__ = [
    "ColumnChange",
    "IncompleteTrailError",
    "Operation",
    "PastRow",
    "RecordVersion",
    "VersionDiff",
    "as_of",
    "audit_context",
    "column_history",
    "context_history",
    "diff",
    "history",
    "net_changes",
    "record_id",
    "table_as_of",
    "table_history",
    "transaction_history",
]
