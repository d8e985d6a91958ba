"""A throwaway Alembic project made from the hyper_audit template, driven in-process.

``Project.create(tmp_path, url, models)`` runs ``alembic init -t <template>`` (the
in-process ``alembic.command.init``), points ``target_metadata`` at a models module
written into the project, and sets ``sqlalchemy.url``. Its methods run the Alembic
commands a user would type, in this process (a subprocess costs about a second each).

Each command runs in the project directory with ``sys.path`` and the logging set-up
restored afterwards: the template's env.py calls ``logging.config.fileConfig``, which
would otherwise disable the loggers of everything imported before it.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations.ops import DowngradeOps, UpgradeOps
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from hyper_audit_alembic.templates import template_dir

#: A project's models: one audited account table (the most common test project).
ACCOUNT_MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
"""


TEMPLATE = template_dir()
PLUGINS = ["alembic.autogenerate.*", "hyper_audit"]

_module_counter = 0


@contextmanager
def isolated(directory: Path, database_url: str | None = None) -> Iterator[None]:
    """Run in ``directory`` with DATABASE_URL set to ``database_url`` (or unset).

    Restores cwd, sys.path, DATABASE_URL and logging afterwards.
    """
    cwd = os.getcwd()
    path = list(sys.path)
    saved_url = os.environ.pop("DATABASE_URL", None)
    if database_url is not None:
        os.environ["DATABASE_URL"] = database_url
    manager = logging.root.manager
    saved = {
        name: (logger.disabled, logger.level, list(logger.handlers), logger.propagate)
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root = (logging.root.level, list(logging.root.handlers))
    os.chdir(directory)
    # prepend_sys_path = . : the finder cached for '.' must not list another directory.
    importlib.invalidate_caches()
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        os.environ.pop("DATABASE_URL", None)
        if saved_url is not None:
            os.environ["DATABASE_URL"] = saved_url
        for name, (disabled, level, handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.disabled, logger.level, logger.propagate = disabled, level, propagate
            logger.handlers[:] = handlers
        logging.root.setLevel(root[0])
        logging.root.handlers[:] = root[1]


def unique_module_name(prefix: str = "models") -> str:
    global _module_counter
    _module_counter += 1
    return f"{prefix}_{os.getpid()}_{_module_counter}"


class Project:
    """An Alembic project in ``root``: alembic.ini + migrations/ from the template."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models_module: str | None = None
        #: DATABASE_URL while commands run (the template's env.py prefers it to the ini).
        self.database_url: str | None = None

    @classmethod
    def create(cls, root: Path, url: str, models: str | None = None) -> Project:
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root)
        with isolated(root):
            command.init(
                Config(str(root / "alembic.ini"), stdout=io.StringIO()),
                "migrations",
                template=str(TEMPLATE),
            )
        project.set_url(url)
        if models is not None:
            project.set_models(models)
        return project

    # -- files -------------------------------------------------------------------------

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    @property
    def env_py(self) -> Path:
        return self.root / "migrations" / "env.py"

    @property
    def versions(self) -> Path:
        return self.root / "migrations" / "versions"

    def _set_ini(self, key: str, value: str) -> None:
        text = self.ini.read_text()
        text, found = re.subn(
            rf"^{re.escape(key)} =.*$", f"{key} = {value}", text, count=1, flags=re.M
        )
        assert found == 1, key
        self.ini.write_text(text)

    def set_url(self, url: str) -> None:
        self._set_ini("sqlalchemy.url", url.replace("%", "%%"))

    def set_include_schemas(self, on: bool) -> None:
        self._set_ini("include_schemas", "true" if on else "false")

    def set_models(self, source: str) -> str:
        """Write the models under a new module name (so changed models are re-imported)."""
        if self.models_module is not None:
            sys.modules.pop(self.models_module, None)
        self.models_module = unique_module_name()
        (self.root / f"{self.models_module}.py").write_text(source)
        self._set_ini("target_metadata", f"{self.models_module}:Base.metadata")
        return self.models_module

    def edit_env(self, old: str, new: str) -> None:
        text = self.env_py.read_text()
        assert old in text, old
        self.env_py.write_text(text.replace(old, new))

    # -- commands ----------------------------------------------------------------------

    def config(self) -> Config:
        return Config(str(self.ini), stdout=io.StringIO())

    def _run(self, fn_name: str, *args: object, **kwargs: object) -> str:
        """Run ``alembic.command.<fn_name>``; what it printed (or its SQL, with sql=True)."""
        config = self.config()
        sql = io.StringIO()
        config.output_buffer = sql
        with isolated(self.root, self.database_url):
            getattr(command, fn_name)(config, *args, **kwargs)
        if kwargs.get("sql"):
            return sql.getvalue()
        stdout = config.stdout
        assert isinstance(stdout, io.StringIO)
        return stdout.getvalue()

    def revision(self, message: str = "change") -> str:
        """``alembic revision --autogenerate``; the new migration's text."""
        before = set(self.versions.glob("*.py"))
        self._run("revision", message=message, autogenerate=True)
        (created,) = set(self.versions.glob("*.py")) - before
        self.last_migration = created
        return created.read_text()

    def upgrade(self, target: str = "head", sql: bool = False) -> str:
        """``alembic upgrade``; with ``sql=True`` the offline SQL (``--sql``)."""
        return self._run("upgrade", target, sql=sql)

    def downgrade(self, target: str, sql: bool = False) -> str:
        return self._run("downgrade", target, sql=sql)

    def check(self) -> str:
        return self._run("check")


# -- autogenerate without a project ------------------------------------------------------


def _code(ops: UpgradeOps | DowngradeOps, context: MigrationContext) -> list[str]:
    from alembic.autogenerate import render_python_code

    lines = render_python_code(ops, migration_context=context).splitlines()
    return [
        line[4:] if line.startswith("    ") else line
        for line in lines
        if line.strip() and not line.strip().startswith("# ###") and line.strip() != "pass"
    ]


def autogenerate(
    connection: Connection, metadata: MetaData, **opts: object
) -> tuple[list[str], list[str]]:
    """The upgrade and downgrade lines autogenerate writes for ``metadata``.

    ``opts`` are ``context.configure()`` options; the plugin is on unless
    ``autogenerate_plugins`` says otherwise.
    """
    from alembic.autogenerate import produce_migrations

    opts.setdefault("autogenerate_plugins", PLUGINS)
    context = MigrationContext.configure(connection, opts={"target_metadata": metadata, **opts})
    script = produce_migrations(context, metadata)
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    return _code(script.upgrade_ops, context), _code(script.downgrade_ops, context)


def migration_body(text: str, function: str) -> list[str]:
    """The lines of ``upgrade``/``downgrade`` in a migration file, dedented, no comments."""
    match = re.search(rf"^def {function}\(\) -> None:\n(.*?)(?=^def |\Z)", text, re.S | re.M)
    assert match, text
    return [
        line[4:]
        for line in match.group(1).splitlines()
        if line.strip() and not line.strip().startswith(("#", '"""')) and line.strip() != "pass"
    ]
