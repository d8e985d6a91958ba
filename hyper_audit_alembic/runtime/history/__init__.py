"""The history API: reading the audit trail from an application.

Re-exports the public functions of the modules that do each job:

- :mod:`.record_id`: record ids computed in Python (:func:`record_id`, :func:`key_text`);
- :mod:`.model`: :class:`RecordVersion`, one audit row;
- :mod:`.resolve`: which table, with which key columns, under which oids;
- :mod:`.versions`: the queries (:func:`history`, :func:`as_of`, :func:`table_history`,
  :func:`transaction_history`, :func:`context_history`, :func:`lookup_record`);
- :mod:`.table_as_of`: a whole table as it stood at a time (:func:`table_as_of`);
- :mod:`.diff`: what each version changed (:func:`diff`, :func:`net_changes`) and
  every change of one column (:func:`column_history`);
- :mod:`.format`: an audit row as JSON, a history as a text table.
"""

from .diff import (
    ColumnChange,
    VersionDiff,
    column_history,
    diff,
    diff_versions,
    net_changes,
)
from .format import (
    context_shown,
    describe_redaction,
    redaction_text,
    render_versions,
    version_as_json,
)
from .model import Operation, RecordVersion
from .record_id import RECORD_ID_NAMESPACE, key_text, record_id
from .resolve import ResolvedTable, parse_table_name
from .table_as_of import PastRow, table_as_of
from .versions import (
    as_of,
    context_history,
    history,
    lookup_record,
    table_history,
    transaction_history,
)

__all__ = [
    "RECORD_ID_NAMESPACE",
    "ColumnChange",
    "Operation",
    "PastRow",
    "RecordVersion",
    "ResolvedTable",
    "VersionDiff",
    "as_of",
    "column_history",
    "context_history",
    "context_shown",
    "describe_redaction",
    "diff",
    "diff_versions",
    "history",
    "key_text",
    "lookup_record",
    "net_changes",
    "parse_table_name",
    "record_id",
    "redaction_text",
    "render_versions",
    "table_as_of",
    "table_history",
    "transaction_history",
    "version_as_json",
]
