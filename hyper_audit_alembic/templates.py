"""The Alembic environment templates: where they live, and writing one into a project.

``hyper_audit`` wires autogenerate for the plugin; ``hyper_audit_sidecar`` manages only
the audit trail, beside an app whose schema another tool owns. Used by ``alembic init -t``
(:func:`template_dir`), the command line's ``init`` and the demo (:func:`init_environment`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATE_NAME = "hyper_audit"
#: An environment that manages only the audit trail, beside an app whose schema another
#: tool owns (its own version table; the app's tables are left alone).
SIDECAR_TEMPLATE_NAME = "hyper_audit_sidecar"


def template_dir(name: str = TEMPLATE_NAME) -> Path:
    """An Alembic template directory of this package (for ``alembic init -t``)."""
    root = resources.files("hyper_audit_alembic.migrations_templates")
    return Path(str(root.joinpath(name)))


def init_environment(
    directory: str, config_file: str = "alembic.ini", *, sidecar: bool = False
) -> Path:
    """Write alembic.ini and a plugin-wired migration environment, like ``alembic init``.

    ``sidecar``: an environment that manages only the audit trail, beside an application
    whose schema another tool owns (its own version table, the app's tables left alone).
    """
    from alembic import command
    from alembic.config import Config

    config = Config(config_file)
    name = SIDECAR_TEMPLATE_NAME if sidecar else TEMPLATE_NAME
    command.init(config, directory, template=str(template_dir(name)))
    return Path(config_file)
