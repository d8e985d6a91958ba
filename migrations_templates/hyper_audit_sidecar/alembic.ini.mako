# Alembic configuration of a hyper_audit_alembic sidecar: it manages only the audit trail
# of a database whose schema another tool owns. Run it with: alembic -c <this file> ...

[alembic]
script_location = ${script_location}
prepend_sys_path = .
path_separator = os

# The database (postgresql:// uses the installed driver); DATABASE_URL overrides it.
sqlalchemy.url = postgresql://user:pass@localhost/dbname

# This environment's own version table, in the audit trail's schema: the app's
# alembic_version is left alone, and the app's environment does not see this one.
version_table = hyper_audit_version
version_table_schema = audit

# The tables to audit are declared in audited.py, beside env.py.

[post_write_hooks]

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
