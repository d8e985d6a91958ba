"""The trail as a time machine: put records back, undo transactions and requests.

- :mod:`.restore`: :func:`restore` (one record to one of its versions) and
  :func:`undelete` (a deleted record back);
- :mod:`.revert`: :func:`revert_transaction` and :func:`revert_context` (every change of a
  transaction or of a request, undone newest first);
- :mod:`.plan`: what they write (:class:`WritePlan`, :class:`RowWrite`) and what stops
  them (:class:`Conflict`, raised as :class:`~hyper_audit_alembic.errors.ConflictError`);
- :mod:`.rows`: the table side (rows as jsonb, the statements).

Every write goes through the caller's ``Session``, so the audit triggers record it with
the caller's ``audit_context``; nothing here commits.
"""

from .plan import Conflict, RowWrite, WritePlan
from .restore import restore, undelete
from .revert import revert_context, revert_transaction

__all__ = [
    "Conflict",
    "RowWrite",
    "WritePlan",
    "restore",
    "revert_context",
    "revert_transaction",
    "undelete",
]
