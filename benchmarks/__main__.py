"""``python -m benchmarks``: the same run as ``python benchmarks/run.py``."""

import sys

from benchmarks.cli import main

sys.exit(main(sys.argv[1:], program="python -m benchmarks"))
