# Alembic configuration, written by hyper_audit_alembic's template.

[alembic]
script_location = ${script_location}
prepend_sys_path = .
path_separator = os

# The database (postgresql:// uses the installed driver); DATABASE_URL overrides it.
sqlalchemy.url = postgresql://user:pass@localhost/dbname

# Where your models' MetaData lives, as module:attribute (e.g. myapp.models:Base.metadata).
target_metadata =

# Compare every schema, not just the default one (the audit schema itself is ignored).
include_schemas = false

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
