"""``python -m hyper_audit_alembic``: the command line (:mod:`hyper_audit_alembic.cli`)."""

import sys

from .cli import main

sys.exit(main())
