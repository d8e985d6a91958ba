"""Where the Alembic environment template lives, installed or in a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATE_NAME = "hyper_audit"


def template_dir() -> Path:
    """The ``hyper_audit`` Alembic template directory (for ``alembic init -t``)."""
    root = resources.files("hyper_audit_alembic.migrations_templates")
    return Path(str(root.joinpath(TEMPLATE_NAME)))
