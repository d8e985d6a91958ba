"""Alembic environment wired for hyper_audit_alembic (online, offline, sync and async)."""

import asyncio
import importlib
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Connection, make_url

from hyper_audit_alembic.urls import configure_url

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# DATABASE_URL overrides sqlalchemy.url; a plain postgresql:// (or postgres://) URL gets
# the driver that is installed (psycopg2, else psycopg 3), postgresql+driver:// is kept.
configure_url(config)


def _load_target_metadata():
    """The MetaData named by ``target_metadata = module:attribute`` in alembic.ini."""
    spec = (config.get_main_option("target_metadata") or "").strip()
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    found = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


# Or set it directly: from myapp.models import Base; target_metadata = Base.metadata
target_metadata = _load_target_metadata()

# Alembic's own comparisons plus the audit trail's (the plugin is named "hyper_audit").
configure_options = dict(
    target_metadata=target_metadata,
    autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"],
    include_schemas=config.get_main_option("include_schemas", "false").lower() == "true",
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
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    from sqlalchemy.ext.asyncio import async_engine_from_config  # needs greenlet

    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    url = make_url(config.get_main_option("sqlalchemy.url"))
    if url.get_dialect().is_async:
        asyncio.run(run_async_migrations())
        return
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
