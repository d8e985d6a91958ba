"""The parts of the benchmark, one module each, and what every part gets and gives.

A part (``--only NAME``) is a :class:`Workload`: it measures into the run's Results, then
renders its own rows of the comparison table, its own tables and its own notes, so adding
a part is one module plus one line in benchmarks/cli.py's WORKLOADS; report.py stays
generic. This module imports none of the parts (they import it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.results import Results
from benchmarks.server import Connection
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres


@dataclass
class Run:
    """What a part measures with: the server, the variants' databases, the options."""

    server: ThrowawayPostgres
    results: Results
    workdir: Path  # scratch files (pgbench scripts, the autogenerate project), removed after
    repeat: int
    duration: int  # seconds per pgbench run
    #: variant -> open connection to its database; empty unless a part that runs needs them.
    conns: dict[str, Connection] = field(default_factory=dict)
    #: The parsed command line, for a part's own options (growth: --growth-rows, --baseline).
    options: argparse.Namespace = field(default_factory=argparse.Namespace)


def no_lines(results: Results) -> list[str]:
    return []


@dataclass(frozen=True)
class Workload:
    """One part of the benchmark.

    `measure` adds samples (and problems, notes) to the run's Results. The three renderers
    read them back and return Markdown lines, or none when the part did not run:
    `table_rows` go into the comparison table (columns untracked, reference design, ours,
    floor, then the ratios: report.comparison_row makes such a row), `tables` after it
    (each followed by its blank line), `notes` after the ratios paragraph (each a paragraph).
    """

    name: str
    measure: Callable[[Run], None]
    #: Needs the four variants' databases (variants.setup_variants) in Run.conns.
    needs_variants: bool = False
    #: Runs when no --only is given; a long or special part can be left to --only NAME.
    in_default_run: bool = True
    table_rows: Callable[[Results], list[str]] = no_lines
    tables: Callable[[Results], list[str]] = no_lines
    notes: Callable[[Results], list[str]] = no_lines
