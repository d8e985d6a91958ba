"""The app's tables whose changes the audit trail records: the sidecar's only models.

Declare each table by its name, its primary-key column(s) and ``info={"audited": True}``.
Leave out every other column: the app's own migrations own them, and this environment
compares nothing but the audit trail. A table not declared here is never touched.

To stop auditing a table, keep its declaration and set ``info={"audited": False}``:
autogenerate then proposes ``op.disable_tracking(...)`` (its audit history stays).
Tables in another schema than the default: ``Table(..., schema="app")``.
"""

from sqlalchemy import Column, Integer, MetaData, Table  # noqa: F401

metadata = MetaData()

# Table("experiments", metadata, Column("experiment_id", Integer, primary_key=True),
#       info={"audited": True})
