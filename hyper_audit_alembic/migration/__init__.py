"""Everything Alembic sees: the audit operations, their SQL, renderers and comparators.

- :mod:`.ops`: one ``MigrateOperation`` class per ``op.`` directive;
- :mod:`.statements`: the SQL each op emits, from the files of ``hyper_audit_alembic/sql/``;
- :mod:`.toimpl`: running that SQL (online, or written out in offline mode);
- :mod:`.render`: writing each op into a migration file;
- :mod:`.compare`: autogenerate's comparators, one module per comparison;
- :mod:`.catalog`: every read of the database's audit state;
- :mod:`.flag`: which models and tables the user flagged for auditing;
- :mod:`.options`: checking every option users give, one validator per kind.

:mod:`hyper_audit_alembic.plugin` registers them with Alembic. Nothing here is imported
by the runtime side (history, audit_context), which needs no Alembic.

Alembic is imported here, before any module of this package runs: importing alembic runs
our plugin's setup(), which imports these modules, so it must happen before one of them
starts loading (a program whose first import is, say, ``hyper_audit_alembic.migration.ops``
would otherwise have setup() find that module half-made).
"""

import alembic  # noqa: F401  (first: see above)
