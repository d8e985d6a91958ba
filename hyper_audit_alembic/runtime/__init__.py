"""What an application imports: reading the audit trail and saying who changed what.

- :mod:`.history`: record ids, one record's history, a table's, a transaction's, as of a
  time, and the ``RecordVersion`` model of an audit row;
- :mod:`.context`: ``audit_context()``, the actor and context of a transaction's changes;
- :mod:`.timemachine`: restore, undelete and revert through the trail;
- :mod:`.compliance`: seals over the trail, their verification, audited redaction.

Nothing here imports Alembic or the migration side: an application reads its history
with SQLAlchemy alone.
"""
