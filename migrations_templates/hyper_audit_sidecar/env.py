"""Alembic environment that manages only the audit trail (hyper_audit_alembic's sidecar).

For a database whose schema another tool owns: this environment keeps its own version
table (``version_table`` in the .ini: ``audit.hyper_audit_version``, in the audit trail's
schema, where the app's own environment does not look), knows only the tables declared in
``audited.py`` next to this file, and compares nothing of them but their audit tracking,
so autogenerate never proposes a change to the app's schema.
"""

import importlib.util
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from alembic.util import CommandError, warn
from sqlalchemy import MetaData, engine_from_config, pool
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from hyper_audit_alembic.urls import configure_url

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# DATABASE_URL overrides sqlalchemy.url; a plain postgresql:// (or postgres://) URL gets
# the driver that is installed (psycopg2, else psycopg 3), postgresql+driver:// is kept.
configure_url(config)


def _load_audited() -> MetaData:
    """The MetaData of audited.py, beside this file (not an importable module)."""
    path = Path(__file__).with_name("audited.py")
    spec = importlib.util.spec_from_file_location("hyper_audit_sidecar_audited", path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.metadata


target_metadata = _load_audited()
DECLARED = {(table.schema, table.name) for table in target_metadata.tables.values()}
SCHEMAS = {schema for schema, _ in DECLARED if schema is not None}


def include_name(name, type_, parent_names):
    """Reflect only the declared tables (and the schemas they are in)."""
    if type_ == "schema":
        return name is None or name in SCHEMAS
    if type_ == "table":
        return (parent_names.get("schema_name"), name) in DECLARED
    return True


def include_object(obj, name, type_, reflected, compare_to):
    """Compare the declared tables that exist, and nothing inside them.

    Their columns, indexes and constraints are the app's: never compared. A declared table
    that is not in the database is not created (it is the app's to create).
    """
    if type_ != "table" or (obj.schema, obj.name) not in DECLARED:
        return False
    if not reflected and compare_to is None:
        shown = f"{obj.schema}.{obj.name}" if obj.schema else obj.name
        warn(
            f"hyper_audit sidecar: table {shown} is declared in audited.py but not in the "
            f"database: nothing to track yet"
        )
        return False
    return True


VERSION_TABLE = config.get_main_option("version_table", "hyper_audit_version")
VERSION_TABLE_SCHEMA = config.get_main_option("version_table_schema", "audit")
# The version table's schema exists before the first migration (op.install_audit() would
# create the audit schema only then); the statement is install_audit's own first one.
CREATE_VERSION_SCHEMA = "create schema if not exists " + (
    postgresql.dialect().identifier_preparer.quote_schema(VERSION_TABLE_SCHEMA)
)

configure_options = dict(
    target_metadata=target_metadata,
    version_table=VERSION_TABLE,
    version_table_schema=VERSION_TABLE_SCHEMA,
    # Tables (their existence only: include_object keeps it to the declared ones) and the
    # audit trail; no column, type, constraint, default or comment comparisons.
    autogenerate_plugins=[
        "alembic.autogenerate.schemas",
        "alembic.autogenerate.tables",
        "hyper_audit",
    ],
    include_schemas=bool(SCHEMAS),
    include_name=include_name,
    include_object=include_object,
)


def run_migrations_offline() -> None:
    """Write the migrations' SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options,
    )
    with context.begin_transaction():
        context.execute(CREATE_VERSION_SCHEMA)
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options)
    with context.begin_transaction():
        # Not for autogenerate and check (they change nothing in the database).
        if not context.get_context().opts.get("dont_mutate"):
            connection.exec_driver_sql(CREATE_VERSION_SCHEMA)
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
