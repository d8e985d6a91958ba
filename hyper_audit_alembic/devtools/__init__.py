"""Developer tools shipped with the package: a throwaway PostgreSQL server and the demo.

``python -m hyper_audit_alembic demo`` (the README's first command) runs
:mod:`.demo` on a :mod:`.throwaway_postgres` server; the tests and the benchmark start
their servers with it too. Neither the migration nor the runtime side imports these.
"""
