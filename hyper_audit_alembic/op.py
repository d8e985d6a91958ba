"""``alembic.op`` itself at run time; ``op.pyi`` types it with the audit directives.

Migrations written from the hyper_audit template import it under TYPE_CHECKING, so
mypy and pyright know ``op.install_audit()`` and friends.
"""

import sys

from alembic import op as _alembic_op

sys.modules[__name__] = _alembic_op
