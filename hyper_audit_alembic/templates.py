"""Where the Alembic environment templates live, installed or in a checkout."""

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
