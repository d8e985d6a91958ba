"""Write overhead of the audit trail: untracked vs the reference design vs this package.

    python benchmarks/run.py                 # the full run (~11 minutes on 2 cores)
    python benchmarks/run.py --quick         # a short run (~4 minutes)
    python benchmarks/run.py --repeat 5      # more repetitions
    python benchmarks/run.py --only bulk     # one part: pgbench, bulk, breakdown, history,
                                             # autogenerate (repeatable)

The script the project's brief names; the benchmark itself is the package around it
(benchmarks/cli.py runs it, benchmarks/README.md says what each row measures). Started as
a script, Python puts this folder first on sys.path; this puts the repository root there
instead, so ``benchmarks`` imports as a package and ``hyper_audit_alembic`` is the working
tree's, whatever it contains now (not an installed copy).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __name__ == "__main__":
    if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
        sys.path[0] = str(ROOT)  # not this folder: its modules are not top-level modules
    elif str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    from benchmarks.cli import main

    sys.exit(main(sys.argv[1:]))
